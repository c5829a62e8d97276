"""A message's media as a dict with a "type"; unknown kinds take the reflective path."""

from __future__ import annotations

from typing import Any, Final

from telethon.tl import types

from tgws.serialize.common import CHANNEL_MARK, fields, iso, marked_id, snake


def _document(media: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "document",
        "mime_type": None,
        "size": None,
        "file_name": None,
        "duration": None,
        "width": None,
        "height": None,
        "title": None,
        "performer": None,
        "emoji": None,
        "spoiler": media.spoiler is True,
    }
    doc = media.document
    if type(doc) is not types.Document:
        return out  # None (self-destructed) or DocumentEmpty
    out["mime_type"] = doc.mime_type
    out["size"] = doc.size
    sticker = gif = round_video = video = voice = audio = False
    for a in doc.attributes:
        cls = type(a)
        if cls is types.DocumentAttributeFilename:
            out["file_name"] = a.file_name
        elif cls is types.DocumentAttributeVideo:
            video = True
            round_video = a.round_message is True
            out["duration"] = a.duration
            out["width"] = a.w
            out["height"] = a.h
        elif cls is types.DocumentAttributeAudio:
            audio = True
            voice = a.voice is True
            out["duration"] = a.duration
            out["title"] = a.title
            out["performer"] = a.performer
        elif cls is types.DocumentAttributeAnimated:
            gif = True
        elif cls is types.DocumentAttributeSticker or cls is types.DocumentAttributeCustomEmoji:
            sticker = True
            out["emoji"] = a.alt
        elif cls is types.DocumentAttributeImageSize:
            out["width"] = a.w
            out["height"] = a.h
    # Precedence matters: video stickers also carry a Video attribute and GIFs (mp4) carry
    # both Animated and Video, so the most specific kind wins.
    if sticker:
        out["type"] = "sticker"
    elif gif:
        out["type"] = "gif"
    elif round_video or media.round is True:
        out["type"] = "video_note"
    elif video:
        out["type"] = "video"
    elif voice or media.voice is True:
        out["type"] = "voice"
    elif audio:
        out["type"] = "audio"
    return out


def _photo(media: Any) -> dict[str, Any]:
    width = height = size = None
    photo = media.photo
    if type(photo) is types.Photo:
        best = -1
        for s in photo.sizes:
            cls = type(s)
            if cls is types.PhotoSize:
                n = s.size
            elif cls is types.PhotoSizeProgressive:
                n = max(s.sizes) if s.sizes else None
            elif cls is types.PhotoCachedSize:
                n = len(s.bytes)
            else:
                continue  # stripped/path thumbnails have no dimensions
            area = s.w * s.h
            if area > best:
                best, width, height, size = area, s.w, s.h, n
    return {
        "type": "photo",
        "width": width,
        "height": height,
        "size": size,
        "spoiler": media.spoiler is True,
    }


def _geo_point(g: Any, out: dict[str, Any]) -> dict[str, Any]:
    if type(g) is types.GeoPoint:
        out["lat"] = g.lat
        out["long"] = g.long
    else:  # GeoPointEmpty: location withheld or unknown
        out["lat"] = None
        out["long"] = None
    return out


def _geo(media: Any) -> dict[str, Any]:
    return _geo_point(media.geo, {"type": "geo"})


def _geo_live(media: Any) -> dict[str, Any]:
    out = _geo_point(media.geo, {"type": "geo_live"})
    out["period"] = media.period
    out["heading"] = media.heading
    return out


def _venue(media: Any) -> dict[str, Any]:
    out = _geo_point(media.geo, {"type": "venue"})
    out["title"] = media.title
    out["address"] = media.address
    out["provider"] = media.provider
    out["venue_id"] = media.venue_id
    out["venue_type"] = media.venue_type
    return out


def _contact(media: Any) -> dict[str, Any]:
    return {
        "type": "contact",
        "phone": media.phone_number,
        "first_name": media.first_name,
        "last_name": media.last_name,
        "user_id": media.user_id or None,  # 0 when the contact has no Telegram account
    }


def _text(t: Any) -> str | None:
    """TextWithEntities (layer 178+) or a plain str (older layers) as str."""
    text: str | None = t if t is None or type(t) is str else getattr(t, "text", None)
    return text


def _poll(media: Any) -> dict[str, Any]:
    poll = media.poll
    results = media.results
    answers = poll.answers or []
    # Vote counts arrive keyed by the answer's opaque `option` bytes, not by position.
    counts: dict[bytes, int | None] = {}
    total = None
    if results is not None:
        total = results.total_voters
        for r in results.results or ():
            counts[r.option] = r.voters
    return {
        "type": "poll",
        "question": _text(poll.question),
        "answers": [_text(a.text) for a in answers],
        "answer_voters": [counts.get(a.option) for a in answers],
        "total_voters": total,
        "closed": poll.closed is True,
        "quiz": poll.quiz is True,
        "multiple_choice": poll.multiple_choice is True,
        "public_voters": poll.public_voters is True,
    }


def _webpage(media: Any) -> dict[str, Any]:
    page = media.webpage
    # WebPagePending/WebPageEmpty may carry just a url; WebPageNotModified carries nothing.
    attrs = getattr(page, "__dict__", None) or {}
    get = attrs.get
    return {
        "type": "webpage",
        "url": get("url"),
        "title": get("title"),
        "site_name": get("site_name"),
        "description": get("description"),
    }


def _dice(media: Any) -> dict[str, Any]:
    return {"type": "dice", "emoticon": media.emoticon, "value": media.value}


def _game(media: Any) -> dict[str, Any]:
    g = media.game
    return {
        "type": "game",
        "short_name": g.short_name,
        "title": g.title,
        "description": g.description,
    }


def _invoice(media: Any) -> dict[str, Any]:
    return {
        "type": "invoice",
        "title": media.title,
        "description": media.description,
        "currency": media.currency,
        "total_amount": media.total_amount,
    }


def _story(media: Any) -> dict[str, Any]:
    return {"type": "story", "peer_id": marked_id(media.peer), "story_id": media.id}


def _giveaway(media: Any) -> dict[str, Any]:
    return {
        "type": "giveaway",
        # Bare channel ids in TL; marked here to match chat_id.
        "channels": [-(CHANNEL_MARK + c) for c in media.channels or ()],
        "quantity": media.quantity,
        "months": media.months,
        "stars": media.stars,
        "until_date": iso(media.until_date),
        "prize_description": media.prize_description,
    }


def _unsupported(media: Any) -> dict[str, Any]:
    return {"type": "unsupported"}


_MEDIA: Final[dict[type, Any]] = {
    types.MessageMediaPhoto: _photo,
    types.MessageMediaDocument: _document,
    types.MessageMediaGeo: _geo,
    types.MessageMediaGeoLive: _geo_live,
    types.MessageMediaVenue: _venue,
    types.MessageMediaContact: _contact,
    types.MessageMediaPoll: _poll,
    types.MessageMediaWebPage: _webpage,
    types.MessageMediaDice: _dice,
    types.MessageMediaGame: _game,
    types.MessageMediaInvoice: _invoice,
    types.MessageMediaStory: _story,
    types.MessageMediaGiveaway: _giveaway,
    types.MessageMediaUnsupported: _unsupported,
}


def media(media: Any) -> dict[str, Any] | None:
    if media is None or type(media) is types.MessageMediaEmpty:
        return None
    handler = _MEDIA.get(type(media))
    if handler is not None:
        try:
            out: dict[str, Any] = handler(media)
            return out
        except (AttributeError, TypeError):
            pass  # a layer changed the class's fields: fall back to the reflective form
    return fields(media, {"type": snake(type(media), "MessageMedia")})
