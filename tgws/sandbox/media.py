"""Media summaries and service actions a sandbox message can carry, built from short names.

Only what a client sees in a history page is modelled (ids, sizes, mime types, attributes):
nothing can be downloaded from the sandbox.
"""

from __future__ import annotations

from typing import Any

from telethon.tl import types

from tgws.sandbox.derive import signed64, when

MEDIA_KINDS = ("photo", "document", "video", "voice", "audio", "gif", "geo", "contact", "poll",
               "webpage")
ACTION_KINDS = ("create", "add_user", "joined_by_link", "joined_by_request", "delete_user",
                "pin", "edit_title")


def _document(key: int, date: int, mime: str, size: int, attributes: list[Any]) -> Any:
    return types.Document(id=signed64(key), access_hash=signed64(key * 31 + 7),
                          file_reference=b"", date=when(date), mime_type=mime, size=size, dc_id=2,
                          attributes=attributes)


def build_media(kind: str, key: int, date: int) -> Any:
    """A `MessageMedia*` of `kind`; `key` (any int) varies ids, sizes and names."""
    small = key % 1000
    if kind == "photo":
        photo = types.Photo(id=signed64(key), access_hash=signed64(key * 31 + 7),
                            file_reference=b"", date=when(date), dc_id=2,
                            sizes=[types.PhotoSize(type="m", w=320, h=240, size=20_000 + small),
                                   types.PhotoSize(type="x", w=800, h=600, size=90_000 + small)])
        return types.MessageMediaPhoto(photo=photo)
    if kind == "document":
        doc = _document(key, date, "application/pdf", 100_000 + small * 37,
                        [types.DocumentAttributeFilename(file_name=f"report-{small}.pdf")])
        return types.MessageMediaDocument(document=doc)
    if kind == "video":
        doc = _document(key, date, "video/mp4", 2_000_000 + small * 911, [
            types.DocumentAttributeVideo(duration=float(5 + small % 120), w=1280, h=720,
                                         supports_streaming=True),
            types.DocumentAttributeFilename(file_name=f"clip-{small}.mp4")])
        return types.MessageMediaDocument(document=doc, video=True)
    if kind == "voice":
        doc = _document(key, date, "audio/ogg", 10_000 + small * 13,
                        [types.DocumentAttributeAudio(duration=1 + small % 60, voice=True)])
        return types.MessageMediaDocument(document=doc, voice=True)
    if kind == "audio":
        doc = _document(key, date, "audio/mpeg", 3_000_000 + small, [
            types.DocumentAttributeAudio(duration=120 + small % 200, title=f"Track {small}",
                                         performer="Sandbox Band"),
            types.DocumentAttributeFilename(file_name=f"track-{small}.mp3")])
        return types.MessageMediaDocument(document=doc)
    if kind == "gif":
        doc = _document(key, date, "video/mp4", 300_000 + small, [
            types.DocumentAttributeAnimated(),
            types.DocumentAttributeVideo(duration=3.0, w=320, h=240)])
        return types.MessageMediaDocument(document=doc)
    if kind == "geo":
        return types.MessageMediaGeo(geo=types.GeoPoint(
            long=13.4 + small / 10_000, lat=52.5 + small / 10_000,
            access_hash=signed64(key)))
    if kind == "contact":
        return types.MessageMediaContact(phone_number=f"1555{small:07d}", first_name="Contact",
                                         last_name=str(small), vcard="", user_id=0)
    if kind == "poll":
        answers = [types.PollAnswer(text=types.TextWithEntities(text=t, entities=[]),
                                    option=bytes([i]))
                   for i, t in enumerate(("Yes", "No", "Maybe"))]
        poll = types.Poll(id=signed64(key), hash=0, answers=answers,
                          question=types.TextWithEntities(text=f"Question {small}?",
                                                          entities=[]))
        return types.MessageMediaPoll(poll=poll, results=types.PollResults(total_voters=small))
    if kind == "webpage":
        page = types.WebPage(id=signed64(key), url=f"https://example.org/{small}",
                             display_url=f"example.org/{small}", hash=0, type="article",
                             site_name="Example", title=f"Article {small}")
        return types.MessageMediaWebPage(webpage=page)
    raise ValueError(f"unknown media kind {kind!r}; expected one of {', '.join(MEDIA_KINDS)}")


def build_action(kind: str, *, users: list[int], inviter: int, title: str, pinned: int) -> Any:
    """A `MessageAction*` of `kind` (see ACTION_KINDS)."""
    if kind == "create":
        return types.MessageActionChannelCreate(title=title)
    if kind == "add_user":
        return types.MessageActionChatAddUser(users=users)
    if kind == "joined_by_link":
        return types.MessageActionChatJoinedByLink(inviter_id=inviter)
    if kind == "joined_by_request":
        return types.MessageActionChatJoinedByRequest()
    if kind == "delete_user":
        return types.MessageActionChatDeleteUser(user_id=users[0])
    if kind == "pin":
        if not pinned:
            raise ValueError("action 'pin' needs reply_to= (the pinned message)")
        return types.MessageActionPinMessage()
    if kind == "edit_title":
        return types.MessageActionChatEditTitle(title=title)
    raise ValueError(f"unknown action {kind!r}; expected one of {', '.join(ACTION_KINDS)}")


def action_user_ids(action: Any) -> list[int]:
    """Users a service message names, which Telegram sends along in the page's `users`."""
    if isinstance(action, types.MessageActionChatAddUser):
        return list(action.users)
    if isinstance(action, types.MessageActionChatJoinedByLink):
        return [action.inviter_id]
    if isinstance(action, types.MessageActionChatDeleteUser):
        return [action.user_id]
    return []
