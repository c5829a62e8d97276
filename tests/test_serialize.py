"""tgws.serialize against real Telethon TL objects.

Objects go through Telethon's own wire format (`bytes(obj)` then BinaryReader) so they
look exactly like what a live client hands us: flags decoded as False rather than None,
dates carrying timezone.utc, and types.Message built as Telethon's patched custom class.
Messages then get `_finish_init` with a minimal client, as iter_messages does.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from telethon.extensions import BinaryReader
from telethon.helpers import add_surrogate
from telethon.tl import types as t
from telethon.tl.custom.message import Message as CustomMessage
from telethon.tl.tlobject import TLObject

from tgws import serialize

GROUP_ID = 1234567890  # bare channel id
GROUP = -1_001_234_567_890  # the same, marked
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# A client stand-in with just what Message._finish_init reads.
_CLIENT = SimpleNamespace(_self_id=999, _mb_entity_cache=SimpleNamespace(get=lambda _id: None))


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


MAY_1 = 1714564800  # 2024-05-01T12:00:00Z
MAY_1_ISO = "2024-05-01T12:00:00Z"


def wire(obj: Any) -> Any:
    """obj serialized to TL bytes and read back, as it would arrive from Telegram."""
    return BinaryReader(bytes(obj)).tgread_object()


def member(u: Any, participant: Any) -> Any:
    """A user as iter_participants yields it."""
    got = wire(u)
    got.participant = wire(participant) if participant is not None else None
    return got


def iterated(**fields: Any) -> Any:
    """A message as iter_messages yields it (group GROUP unless peer_id is given)."""
    fields.setdefault("peer_id", t.PeerChannel(GROUP_ID))
    fields.setdefault("date", ts(MAY_1))
    fields.setdefault("message", "")
    m = wire(t.Message(**fields))
    m._finish_init(_CLIENT, {}, None)
    return m


def service(action: Any, **fields: Any) -> Any:
    fields.setdefault("peer_id", t.PeerChannel(GROUP_ID))
    fields.setdefault("date", ts(MAY_1))
    m = wire(t.MessageService(id=7, action=action, **fields))
    m._finish_init(_CLIENT, {}, None)
    return m


def assert_json_native(v: Any, path: str = "$") -> None:
    if v is None or type(v) in (str, int, float, bool):
        return
    if type(v) is list:
        for i, x in enumerate(v):
            assert_json_native(x, f"{path}[{i}]")
        return
    assert type(v) is dict, f"{path}: {type(v).__name__}"
    for k, x in v.items():
        assert type(k) is str, f"{path}: key {k!r}"
        assert_json_native(x, f"{path}.{k}")


def assert_dates_iso(v: Any, keys: tuple[str, ...]) -> None:
    """Every value under a date-like key is None or ISO 8601 UTC with 'Z'."""
    if type(v) is dict:
        for k, x in v.items():
            if k in keys and x is not None:
                assert ISO_RE.match(x), (k, x)
            assert_dates_iso(x, keys)
    elif type(v) is list:
        for x in v:
            assert_dates_iso(x, keys)


DATE_KEYS = ("date", "edit_date", "joined", "was_online", "expires", "until_date")


def ann(**overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "id": 111,
        "access_hash": 5,
        "first_name": "Ann",
        "last_name": "Lee",
        "username": "ann",
        "phone": "15550001",
        "lang_code": "en",
        "premium": True,
        "status": t.UserStatusOffline(was_online=ts(MAY_1)),
    }
    fields.update(overrides)
    return t.User(**fields)


# --- users -------------------------------------------------------------------------------
def test_user_full_shape() -> None:
    u = member(ann(), t.ChannelParticipant(user_id=111, date=ts(MAY_1 - 3600)))
    assert serialize.user(u) == {
        "id": 111,
        "username": "ann",
        "usernames": [],
        "first_name": "Ann",
        "last_name": "Lee",
        "phone": "15550001",
        "lang_code": "en",
        "bot": False,
        "deleted": False,
        "verified": False,
        "premium": True,
        "scam": False,
        "fake": False,
        "restricted": False,
        "support": False,
        "is_self": False,
        "contact": False,
        "mutual_contact": False,
        "status": {"type": "offline", "was_online": MAY_1_ISO, "expires": None},
        "membership": {
            "role": "member",
            "joined": "2024-05-01T11:00:00Z",
            "inviter_id": None,
            "admin_rank": None,
            "via_request": False,
        },
    }


def test_user_flags() -> None:
    u = member(
        ann(
            bot=True,
            bot_info_version=1,
            deleted=True,
            verified=True,
            scam=True,
            fake=True,
            restricted=True,
            restriction_reason=[t.RestrictionReason(platform="all", reason="spam", text="x")],
        ),
        None,
    )
    got = serialize.user(u)
    for flag in ("bot", "deleted", "verified", "scam", "fake", "restricted", "premium"):
        assert got[flag] is True, flag
    assert got["membership"] is None


def test_user_without_participant_attribute() -> None:
    # get_entity users never had .participant set at all.
    assert serialize.user(wire(ann()))["membership"] is None


def test_user_built_in_code_has_bool_flags() -> None:
    # Constructed (not decoded) objects default flags to None; we still emit booleans.
    got = serialize.user(ann())
    assert got["bot"] is False and got["deleted"] is False


_RIGHTS = t.ChatAdminRights(delete_messages=True)


@pytest.mark.parametrize(
    ("participant", "membership"),
    [
        (
            t.ChannelParticipant(user_id=111, date=ts(MAY_1)),
            ("member", MAY_1_ISO, None, None, False),
        ),
        (
            t.ChannelParticipantSelf(user_id=111, inviter_id=222, date=ts(MAY_1), via_request=True),
            ("self", MAY_1_ISO, 222, None, True),
        ),
        (
            t.ChannelParticipantAdmin(
                user_id=111,
                promoted_by=222,
                date=ts(MAY_1),
                admin_rights=_RIGHTS,
                is_self=True,  # TL sends inviter_id only alongside is_self
                inviter_id=333,
                rank="Mod",
            ),
            ("admin", MAY_1_ISO, 333, "Mod", False),
        ),
        (
            t.ChannelParticipantCreator(user_id=111, admin_rights=_RIGHTS, rank="Boss"),
            ("creator", None, None, "Boss", False),
        ),
        (
            t.ChannelParticipantBanned(
                peer=t.PeerUser(111),
                kicked_by=222,
                date=ts(MAY_1),
                banned_rights=t.ChatBannedRights(until_date=ts(0), view_messages=True),
                left=True,
            ),
            ("banned", MAY_1_ISO, None, None, False),
        ),
        (
            t.ChannelParticipantBanned(
                peer=t.PeerUser(111),
                kicked_by=222,
                date=ts(MAY_1),
                banned_rights=t.ChatBannedRights(until_date=ts(0), send_messages=True),
            ),
            ("restricted", MAY_1_ISO, None, None, False),
        ),
        (
            t.ChannelParticipantBanned(
                peer=t.PeerUser(111),
                kicked_by=222,
                date=ts(MAY_1),
                banned_rights=t.ChatBannedRights(until_date=ts(0), send_messages=True),
                left=True,
            ),
            ("left", MAY_1_ISO, None, None, False),
        ),
        (t.ChannelParticipantLeft(peer=t.PeerUser(111)), ("left", None, None, None, False)),
        (
            t.ChatParticipant(user_id=111, inviter_id=222, date=ts(MAY_1)),
            ("member", MAY_1_ISO, 222, None, False),
        ),
        (
            t.ChatParticipantAdmin(user_id=111, inviter_id=222, date=ts(MAY_1)),
            ("admin", MAY_1_ISO, 222, None, False),
        ),
        (t.ChatParticipantCreator(user_id=111), ("creator", None, None, None, False)),
    ],
)
def test_membership_roles(participant: Any, membership: tuple[Any, ...]) -> None:
    got = serialize.user(member(ann(), participant))["membership"]
    keys = ("role", "joined", "inviter_id", "admin_rank", "via_request")
    assert got == dict(zip(keys, membership, strict=True))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            t.UserStatusOnline(expires=ts(MAY_1 + 300)),
            {"type": "online", "was_online": None, "expires": "2024-05-01T12:05:00Z"},
        ),
        (
            t.UserStatusOffline(was_online=ts(MAY_1)),
            {"type": "offline", "was_online": MAY_1_ISO, "expires": None},
        ),
        (t.UserStatusRecently(), {"type": "recently", "was_online": None, "expires": None}),
        (t.UserStatusLastWeek(), {"type": "last_week", "was_online": None, "expires": None}),
        (t.UserStatusLastMonth(), {"type": "last_month", "was_online": None, "expires": None}),
        (t.UserStatusEmpty(), {"type": "long_ago", "was_online": None, "expires": None}),
        (None, {"type": "hidden", "was_online": None, "expires": None}),
    ],
)
def test_status(status: Any, expected: dict[str, Any]) -> None:
    assert serialize.user(member(ann(status=status), None))["status"] == expected


def test_collectible_usernames() -> None:
    names = [
        t.Username("ann_nft", active=True),
        t.Username("ann_old", active=False),
        t.Username("ann_main", editable=True, active=True),
    ]
    got = serialize.user(wire(ann(username=None, usernames=names)))
    assert got["usernames"] == ["ann_nft", "ann_main"]
    assert got["username"] == "ann_nft"  # no plain username: first active one stands in


def test_user_empty_does_not_crash() -> None:
    got = serialize.user(wire(t.UserEmpty(id=5)))
    assert got["id"] == 5
    assert got["first_name"] is None and got["bot"] is False
    assert got["status"]["type"] == "hidden"


def test_join_date() -> None:
    joined = member(ann(), t.ChannelParticipant(user_id=111, date=ts(MAY_1)))
    assert serialize.join_date(joined) == MAY_1
    basic = member(ann(), t.ChatParticipant(user_id=111, inviter_id=2, date=ts(MAY_1 + 1)))
    assert serialize.join_date(basic) == MAY_1 + 1
    creator = member(ann(), t.ChannelParticipantCreator(user_id=111, admin_rights=_RIGHTS))
    assert serialize.join_date(creator) is None
    assert serialize.join_date(member(ann(), None)) is None
    assert serialize.join_date(wire(ann())) is None  # no .participant attribute at all


def test_join_date_naive_is_utc() -> None:
    u = SimpleNamespace(participant=SimpleNamespace(date=datetime(2024, 5, 1, 12)))
    assert serialize.join_date(u) == MAY_1


# --- messages ----------------------------------------------------------------------------
def test_message_full_shape() -> None:
    m = iterated(
        id=42,
        message="hello **world**",
        from_id=t.PeerUser(111),
        edit_date=ts(MAY_1 + 60),
        reply_to=t.MessageReplyHeader(reply_to_msg_id=41),
        views=10,
        forwards=2,
        replies=t.MessageReplies(replies=3, replies_pts=1),
        pinned=True,
        grouped_id=2**62 + 5,
        via_bot_id=555,
        entities=[
            t.MessageEntityBold(offset=6, length=9),
            t.MessageEntityTextUrl(offset=0, length=5, url="https://example.org"),
        ],
    )
    assert serialize.message(m) == {
        "id": 42,
        "date": MAY_1_ISO,
        "edit_date": "2024-05-01T12:01:00Z",
        "text": "hello **world**",
        "sender_id": 111,
        "chat_id": GROUP,
        "out": False,
        "reply_to_msg_id": 41,
        "reply_to_top_id": None,
        "topic_id": None,
        "forward": None,
        "views": 10,
        "forwards": 2,
        "replies": 3,
        "pinned": True,
        "post": False,
        "silent": False,
        "noforwards": False,
        "grouped_id": 2**62 + 5,
        "via_bot_id": 555,
        "post_author": None,
        "entities": [
            {"type": "bold", "offset": 6, "length": 9},
            {"type": "text_url", "offset": 0, "length": 5, "url": "https://example.org"},
        ],
        "media": None,
        "action": None,
    }


@pytest.mark.parametrize(
    ("peer", "from_id", "post", "sender", "chat"),
    [
        (t.PeerChannel(GROUP_ID), t.PeerUser(111), False, 111, GROUP),
        # A broadcast post: no from_id; Telethon (and we) name the channel as sender.
        (t.PeerChannel(GROUP_ID), None, True, GROUP, GROUP),
        # An anonymous admin in a supergroup posts "as the group".
        (t.PeerChannel(GROUP_ID), t.PeerChannel(GROUP_ID), False, GROUP, GROUP),
        # Basic groups are marked -id.
        (t.PeerChat(4242), t.PeerUser(111), False, 111, -4242),
    ],
)
def test_sender_and_chat_ids_match_telethon(
    peer: Any, from_id: Any, post: bool, sender: int, chat: int
) -> None:
    m = iterated(id=1, peer_id=peer, from_id=from_id, post=post)
    got = serialize.message(m)
    assert (got["sender_id"], got["chat_id"]) == (sender, chat)
    assert (got["sender_id"], got["chat_id"]) == (m.sender_id, m.chat_id)


def test_message_without_finish_init() -> None:
    # Built directly: Telethon patches types.Message to its custom class.
    m = t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), message="hi")
    assert isinstance(m, CustomMessage)
    got = serialize.message(m)
    assert got["text"] == "hi" and got["chat_id"] == GROUP and got["sender_id"] is None


def test_forum_topic() -> None:
    in_topic = iterated(id=2, reply_to=t.MessageReplyHeader(reply_to_msg_id=100, forum_topic=True))
    got = serialize.message(in_topic)
    assert (got["reply_to_msg_id"], got["reply_to_top_id"], got["topic_id"]) == (100, None, 100)
    reply_in_topic = iterated(
        id=3,
        reply_to=t.MessageReplyHeader(reply_to_msg_id=150, reply_to_top_id=100, forum_topic=True),
    )
    got = serialize.message(reply_in_topic)
    assert (got["reply_to_msg_id"], got["reply_to_top_id"], got["topic_id"]) == (150, 100, 100)


def test_story_reply_header_is_not_a_message_reply() -> None:
    m = iterated(id=2, reply_to=t.MessageReplyStoryHeader(peer=t.PeerUser(111), story_id=5))
    got = serialize.message(m)
    assert got["reply_to_msg_id"] is None and got["topic_id"] is None


def test_forward() -> None:
    m = iterated(
        id=9,
        from_id=t.PeerUser(111),
        fwd_from=t.MessageFwdHeader(
            date=ts(MAY_1 - 86400),
            from_id=t.PeerChannel(777),
            channel_post=12,
            post_author="Ed",
        ),
    )
    assert serialize.message(m)["forward"] == {
        "from_id": -1_000_000_000_777,
        "from_name": None,
        "date": "2024-04-30T12:00:00Z",
        "channel_post": 12,
        "post_author": "Ed",
    }
    hidden = iterated(id=10, fwd_from=t.MessageFwdHeader(date=ts(MAY_1), from_name="Someone"))
    assert serialize.message(hidden)["forward"] == {
        "from_id": None,
        "from_name": "Someone",
        "date": MAY_1_ISO,
        "channel_post": None,
        "post_author": None,
    }


def test_entities_extras() -> None:
    m = iterated(
        id=1,
        message="x" * 20,
        entities=[
            t.MessageEntityMentionName(offset=0, length=3, user_id=111),
            t.MessageEntityPre(offset=3, length=4, language="python"),
            t.MessageEntityCustomEmoji(offset=7, length=2, document_id=2**63 - 1),
            t.MessageEntityBotCommand(offset=9, length=5),
        ],
    )
    assert serialize.message(m)["entities"] == [
        {"type": "mention_name", "offset": 0, "length": 3, "user_id": 111},
        {"type": "pre", "offset": 3, "length": 4, "language": "python"},
        {"type": "custom_emoji", "offset": 7, "length": 2, "document_id": 2**63 - 1},
        {"type": "bot_command", "offset": 9, "length": 5},
    ]


# --- media -------------------------------------------------------------------------------
def _doc(*attributes: Any, mime: str = "application/octet-stream", size: int = 1000) -> Any:
    return t.Document(
        id=1,
        access_hash=2,
        file_reference=b"ref",
        date=ts(MAY_1),
        mime_type=mime,
        size=size,
        dc_id=2,
        attributes=list(attributes),
    )


_STICKERSET = t.InputStickerSetEmpty()
_DOC_NULLS: dict[str, Any] = {
    "mime_type": None,
    "size": None,
    "file_name": None,
    "duration": None,
    "width": None,
    "height": None,
    "title": None,
    "performer": None,
    "emoji": None,
    "spoiler": False,
}


def _docout(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **_DOC_NULLS, **fields}


MEDIA_CASES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "photo",
        t.MessageMediaPhoto(
            photo=t.Photo(
                id=1,
                access_hash=2,
                file_reference=b"r",
                date=ts(MAY_1),
                dc_id=2,
                sizes=[
                    t.PhotoStrippedSize(type="i", bytes=b"\x01\x02"),
                    t.PhotoSize(type="m", w=320, h=240, size=20000),
                    t.PhotoSizeProgressive(type="y", w=1280, h=960, sizes=[1000, 50000, 90000]),
                ],
            ),
            spoiler=True,
        ),
        {"type": "photo", "width": 1280, "height": 960, "size": 90000, "spoiler": True},
    ),
    (
        "photo_expired",
        t.MessageMediaPhoto(ttl_seconds=10),
        {"type": "photo", "width": None, "height": None, "size": None, "spoiler": False},
    ),
    (
        "document",
        t.MessageMediaDocument(
            document=_doc(t.DocumentAttributeFilename("report.pdf"), mime="application/pdf")
        ),
        _docout("document", mime_type="application/pdf", size=1000, file_name="report.pdf"),
    ),
    (
        "video",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeVideo(duration=12.5, w=1920, h=1080),
                t.DocumentAttributeFilename("clip.mp4"),
                mime="video/mp4",
            ),
            video=True,
        ),
        _docout(
            "video",
            mime_type="video/mp4",
            size=1000,
            file_name="clip.mp4",
            duration=12.5,
            width=1920,
            height=1080,
        ),
    ),
    (
        "video_note",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeVideo(duration=5, w=384, h=384, round_message=True),
                mime="video/mp4",
            ),
            round=True,
        ),
        _docout("video_note", mime_type="video/mp4", size=1000, duration=5, width=384, height=384),
    ),
    (
        "gif",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeVideo(duration=2, w=200, h=100),
                t.DocumentAttributeAnimated(),
                mime="video/mp4",
            )
        ),
        _docout("gif", mime_type="video/mp4", size=1000, duration=2, width=200, height=100),
    ),
    (
        "audio",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeAudio(duration=200, title="Song", performer="Band"),
                t.DocumentAttributeFilename("song.mp3"),
                mime="audio/mpeg",
            )
        ),
        _docout(
            "audio",
            mime_type="audio/mpeg",
            size=1000,
            file_name="song.mp3",
            duration=200,
            title="Song",
            performer="Band",
        ),
    ),
    (
        "voice",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeAudio(duration=7, voice=True, waveform=b"\x00\x01"),
                mime="audio/ogg",
            ),
            voice=True,
        ),
        _docout("voice", mime_type="audio/ogg", size=1000, duration=7),
    ),
    (
        "sticker",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeImageSize(w=512, h=512),
                t.DocumentAttributeSticker(alt="😀", stickerset=_STICKERSET),
                mime="image/webp",
            )
        ),
        _docout("sticker", mime_type="image/webp", size=1000, width=512, height=512, emoji="😀"),
    ),
    (
        "video_sticker",
        t.MessageMediaDocument(
            document=_doc(
                t.DocumentAttributeVideo(duration=3, w=512, h=512),
                t.DocumentAttributeSticker(alt="🔥", stickerset=_STICKERSET),
                mime="video/webm",
            )
        ),
        _docout(
            "sticker",
            mime_type="video/webm",
            size=1000,
            duration=3,
            width=512,
            height=512,
            emoji="🔥",
        ),
    ),
    (
        "document_gone",
        t.MessageMediaDocument(ttl_seconds=5),
        _docout("document"),
    ),
    (
        "geo",
        t.MessageMediaGeo(geo=t.GeoPoint(long=13.4, lat=52.5, access_hash=1)),
        {"type": "geo", "lat": 52.5, "long": 13.4},
    ),
    (
        "geo_empty",
        t.MessageMediaGeo(geo=t.GeoPointEmpty()),
        {"type": "geo", "lat": None, "long": None},
    ),
    (
        "geo_live",
        t.MessageMediaGeoLive(
            geo=t.GeoPoint(long=13.4, lat=52.5, access_hash=1), period=900, heading=90
        ),
        {"type": "geo_live", "lat": 52.5, "long": 13.4, "period": 900, "heading": 90},
    ),
    (
        "venue",
        t.MessageMediaVenue(
            geo=t.GeoPoint(long=2.29, lat=48.85, access_hash=1),
            title="Tour Eiffel",
            address="Champ de Mars",
            provider="foursquare",
            venue_id="abc",
            venue_type="landmark",
        ),
        {
            "type": "venue",
            "lat": 48.85,
            "long": 2.29,
            "title": "Tour Eiffel",
            "address": "Champ de Mars",
            "provider": "foursquare",
            "venue_id": "abc",
            "venue_type": "landmark",
        },
    ),
    (
        "contact",
        t.MessageMediaContact(
            phone_number="+15550002", first_name="Bo", last_name="", vcard="", user_id=0
        ),
        {
            "type": "contact",
            "phone": "+15550002",
            "first_name": "Bo",
            "last_name": "",
            "user_id": None,
        },
    ),
    (
        "poll",
        t.MessageMediaPoll(
            poll=t.Poll(
                id=1,
                question=t.TextWithEntities(text="Lunch?", entities=[]),
                answers=[
                    t.PollAnswer(text=t.TextWithEntities(text="Pizza", entities=[]), option=b"0"),
                    t.PollAnswer(text=t.TextWithEntities(text="Sushi", entities=[]), option=b"1"),
                ],
                hash=0,
                quiz=True,
            ),
            results=t.PollResults(
                results=[t.PollAnswerVoters(option=b"1", voters=4, recent_voters=[])],
                total_voters=4,
            ),
        ),
        {
            "type": "poll",
            "question": "Lunch?",
            "answers": ["Pizza", "Sushi"],
            "answer_voters": [None, 4],
            "total_voters": 4,
            "closed": False,
            "quiz": True,
            "multiple_choice": False,
            "public_voters": False,
        },
    ),
    (
        "webpage",
        t.MessageMediaWebPage(
            webpage=t.WebPage(
                id=1,
                url="https://example.org/a",
                display_url="example.org/a",
                hash=0,
                site_name="Example",
                title="A page",
                description="About A",
            )
        ),
        {
            "type": "webpage",
            "url": "https://example.org/a",
            "title": "A page",
            "site_name": "Example",
            "description": "About A",
        },
    ),
    (
        "webpage_pending",
        t.MessageMediaWebPage(webpage=t.WebPagePending(id=1, date=ts(MAY_1), url="https://x.y")),
        {
            "type": "webpage",
            "url": "https://x.y",
            "title": None,
            "site_name": None,
            "description": None,
        },
    ),
    (
        "dice",
        t.MessageMediaDice(value=6, emoticon="🎲"),
        {"type": "dice", "emoticon": "🎲", "value": 6},
    ),
    (
        "game",
        t.MessageMediaGame(
            game=t.Game(
                id=1,
                access_hash=2,
                short_name="tetris",
                title="Tetris",
                description="Blocks",
                photo=t.PhotoEmpty(id=0),
            )
        ),
        {"type": "game", "short_name": "tetris", "title": "Tetris", "description": "Blocks"},
    ),
    (
        "invoice",
        t.MessageMediaInvoice(
            title="Ticket",
            description="One ride",
            currency="EUR",
            total_amount=250,
            start_param="p",
        ),
        {
            "type": "invoice",
            "title": "Ticket",
            "description": "One ride",
            "currency": "EUR",
            "total_amount": 250,
        },
    ),
    (
        "story",
        t.MessageMediaStory(peer=t.PeerUser(111), id=33),
        {"type": "story", "peer_id": 111, "story_id": 33},
    ),
    (
        "giveaway",
        t.MessageMediaGiveaway(channels=[GROUP_ID], quantity=3, until_date=ts(MAY_1), months=6),
        {
            "type": "giveaway",
            "channels": [GROUP],
            "quantity": 3,
            "months": 6,
            "stars": None,
            "until_date": MAY_1_ISO,
            "prize_description": None,
        },
    ),
    ("unsupported", t.MessageMediaUnsupported(), {"type": "unsupported"}),
    (
        # No dedicated handler: the reflective fallback names it and copies simple fields.
        "giveaway_results",
        t.MessageMediaGiveawayResults(
            channel_id=GROUP_ID,
            launch_msg_id=5,
            winners_count=2,
            unclaimed_count=0,
            winners=[111, 222],
            until_date=ts(MAY_1),
        ),
        {
            "type": "giveaway_results",
            "channel_id": GROUP_ID,
            "launch_msg_id": 5,
            "winners_count": 2,
            "unclaimed_count": 0,
            "winners": [111, 222],
            "until_date": MAY_1_ISO,
            "only_new_subscribers": False,
            "refunded": False,
            "additional_peers_count": None,
            "months": None,
            "stars": None,
            "prize_description": None,
        },
    ),
]


@pytest.mark.parametrize(
    ("media", "expected"),
    [(media, expected) for _, media, expected in MEDIA_CASES],
    ids=[name for name, _, _ in MEDIA_CASES],
)
def test_media(media: Any, expected: dict[str, Any]) -> None:
    got = serialize.message(iterated(id=1, media=media))["media"]
    assert got == expected
    assert_json_native(got)


def test_media_empty_is_null() -> None:
    assert serialize.message(iterated(id=1, media=t.MessageMediaEmpty()))["media"] is None


class MessageMediaHologram(TLObject):  # type: ignore[misc]  # a TL class from a future layer
    def __init__(self, depth: int, blob: bytes, peer: Any, when: datetime) -> None:
        self.depth = depth
        self.blob = blob
        self.peer = peer
        self.when = when


def test_unknown_media_falls_back_to_class_name() -> None:
    m = t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), message="")
    m.media = MessageMediaHologram(3, b"\x00", t.PeerChat(5), ts(MAY_1))
    assert serialize.message(m)["media"] == {
        "type": "hologram",
        "depth": 3,
        "peer": -5,
        "when": MAY_1_ISO,
    }


def test_known_media_with_unexpected_fields_falls_back() -> None:
    # A later layer could drop a field our handler reads: no crash, reflective output.
    m = t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), message="")
    broken = t.MessageMediaDice(value=3, emoticon="🎯")
    del broken.emoticon
    m.media = broken
    assert serialize.message(m)["media"] == {"type": "dice", "value": 3, "game_outcome": None}


# --- service actions ---------------------------------------------------------------------
ACTION_CASES: list[tuple[Any, dict[str, Any]]] = [
    (t.MessageActionChatAddUser(users=[111, 222]), {"type": "chat_add_user", "users": [111, 222]}),
    (t.MessageActionChatDeleteUser(user_id=111), {"type": "chat_delete_user", "user_id": 111}),
    (
        t.MessageActionChatJoinedByLink(inviter_id=222),
        {"type": "chat_joined_by_link", "inviter_id": 222},
    ),
    (t.MessageActionChatJoinedByRequest(), {"type": "chat_joined_by_request"}),
    (
        t.MessageActionChatEditTitle(title="New name"),
        {"type": "chat_edit_title", "title": "New name"},
    ),
    (
        t.MessageActionChatCreate(title="G", users=[111]),
        {"type": "chat_create", "title": "G", "users": [111]},
    ),
    (t.MessageActionPinMessage(), {"type": "pin_message"}),
    (t.MessageActionChatDeletePhoto(), {"type": "chat_delete_photo"}),
    (
        t.MessageActionChatEditPhoto(photo=t.PhotoEmpty(id=0)),
        {"type": "chat_edit_photo"},  # the photo itself is not a simple field
    ),
    (
        t.MessageActionChatMigrateTo(channel_id=GROUP_ID),
        {"type": "chat_migrate_to", "channel_id": GROUP},
    ),
    (
        t.MessageActionChannelMigrateFrom(title="Old", chat_id=4242),
        {"type": "channel_migrate_from", "title": "Old", "chat_id": -4242},
    ),
    (
        t.MessageActionTopicCreate(title="Topic", icon_color=0x6FB9F0),
        {
            "type": "topic_create",
            "title": "Topic",
            "icon_color": 0x6FB9F0,
            "title_missing": False,
            "icon_emoji_id": None,
        },
    ),
    (
        t.MessageActionSetMessagesTTL(period=86400),
        {"type": "set_messages_ttl", "period": 86400, "auto_setting_from": None},
    ),
    (
        t.MessageActionGroupCall(call=t.InputGroupCall(id=1, access_hash=2), duration=60),
        {"type": "group_call", "duration": 60},
    ),
    (
        t.MessageActionGroupCallScheduled(
            call=t.InputGroupCall(id=1, access_hash=2), schedule_date=ts(MAY_1)
        ),
        {"type": "group_call_scheduled", "schedule_date": MAY_1_ISO},
    ),
    (
        t.MessageActionRequestedPeer(button_id=1, peers=[t.PeerUser(5), t.PeerChannel(6)]),
        {"type": "requested_peer", "button_id": 1, "peers": [5, -1_000_000_000_006]},
    ),
]


@pytest.mark.parametrize(
    ("action", "expected"),
    ACTION_CASES,
    ids=[type(a).__name__ for a, _ in ACTION_CASES],
)
def test_actions(action: Any, expected: dict[str, Any]) -> None:
    got = serialize.message(service(action, from_id=t.PeerUser(111)))
    assert got["action"] == expected
    assert got["text"] is None and got["media"] is None and got["sender_id"] == 111
    assert_json_native(got)


def test_pin_message_target_is_reply_to() -> None:
    m = service(t.MessageActionPinMessage(), reply_to=t.MessageReplyHeader(reply_to_msg_id=40))
    got = serialize.message(m)
    assert got["action"] == {"type": "pin_message"} and got["reply_to_msg_id"] == 40


class MessageActionTeleport(TLObject):  # type: ignore[misc]
    def __init__(self) -> None:
        self.huge = 2**127  # TL has int128/int256; orjson stops at 64 bits
        self.raw = b"\x00\x01"
        self.nested = t.PhotoEmpty(id=1)
        self.names = ["a", "b"]
        self.mixed = [t.PhotoEmpty(id=1)]
        self.empty: list[Any] = []
        self._private = "hidden"


def test_unknown_action() -> None:
    m = t.MessageService(
        id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), action=MessageActionTeleport()
    )
    got = serialize.message(m)["action"]
    assert got == {"type": "teleport", "huge": str(2**127), "names": ["a", "b"], "empty": []}
    orjson.dumps(got)


def test_lenient_message() -> None:
    # Not a Telethon message at all: no crash, missing fields read as null.
    got = serialize.message(SimpleNamespace(id=1, from_id=t.PeerUser(3), message="x"))
    assert got["id"] == 1 and got["sender_id"] == 3 and got["date"] is None
    assert got["text"] == "x" and got["entities"] == [] and got["media"] is None


# --- envelopes ---------------------------------------------------------------------------
def test_user_envelope_seed_shape() -> None:
    u = member(ann(), t.ChannelParticipant(user_id=111, date=ts(MAY_1)))
    raw = serialize.user_envelope("group_name", u)
    assert type(raw) is bytes
    parsed = json.loads(raw)
    assert parsed == {
        "event": "users",
        "data": {
            "status": "success",
            "message": {"group": "group_name", "user": serialize.user(u)},
        },
    }
    assert list(parsed) == ["event", "data"]
    assert list(parsed["data"]) == ["status", "message"]
    assert list(parsed["data"]["message"]) == ["group", "user"]
    assert next(iter(parsed["data"]["message"]["user"])) == "id"
    assert type(parsed["data"]["message"]["user"]["id"]) is int


def test_message_envelope_seed_shape() -> None:
    m = iterated(id=42, message="hi", from_id=t.PeerUser(111))
    parsed = json.loads(serialize.message_envelope("group_name", m))
    assert parsed == {
        "event": "chats",
        "data": {
            "status": "success",
            "message": {"group": "group_name", "chat": serialize.message(m)},
        },
    }
    assert list(parsed) == ["event", "data"]
    assert list(parsed["data"]) == ["status", "message"]
    assert list(parsed["data"]["message"]) == ["group", "chat"]
    assert parsed["data"]["message"]["chat"]["id"] == 42


def _corpus() -> list[Any]:
    msgs = [iterated(id=1, media=media) for _, media, _ in MEDIA_CASES]
    msgs += [service(action) for action, _ in ACTION_CASES]
    return msgs


def test_everything_is_json_native_with_iso_dates() -> None:
    users = [member(ann(), p) for p in (None, t.ChannelParticipant(user_id=1, date=ts(MAY_1)))]
    for item in [serialize.user(u) for u in users] + [serialize.message(m) for m in _corpus()]:
        assert_json_native(item)
        assert_dates_iso(item, DATE_KEYS)
        assert orjson.loads(orjson.dumps(item)) == item


def test_lone_surrogates_are_replaced_not_fatal() -> None:
    # json.loads happily yields lone surrogates from "\ud800" escapes in a client frame.
    group = json.loads('"g\\ud800"')
    m = iterated(id=1, message="ok")
    m.message = "bad \udc00 text"
    parsed = json.loads(serialize.message_envelope(group, m))
    assert parsed["data"]["message"]["group"] == "g\ufffd"
    assert parsed["data"]["message"]["chat"]["text"] == "bad \ufffd text"


def test_surrogate_pairs_are_rejoined() -> None:
    # telethon.helpers.add_surrogate output (pairs as two code points) must not be lost.
    m = iterated(id=1, message="ok")
    m.message = add_surrogate("smile 😀")
    parsed = json.loads(serialize.message_envelope("g", m))
    assert parsed["data"]["message"]["chat"]["text"] == "smile 😀"


# --- properties --------------------------------------------------------------------------
@given(text=st.text())
def test_text_round_trips(text: str) -> None:
    m = wire(t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), message=text))
    parsed = json.loads(serialize.message_envelope("g", m))
    assert parsed["data"]["message"]["chat"]["text"] == text


# Surrogates are rare in st.characters' full range; mix them in deliberately.
_ANY_CHAR = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.characters(codec=None, categories=["Cs"]),
)


def _has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


@given(text=st.text(alphabet=_ANY_CHAR))
def test_any_code_points_encode(text: str) -> None:
    # Lone surrogates included: the envelope still encodes to valid JSON, nothing else lost.
    m = t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), message=text)
    parsed = json.loads(serialize.message_envelope(text, m))["data"]["message"]
    for got in (parsed["group"], parsed["chat"]["text"]):
        assert not _has_surrogate(got)
        if not _has_surrogate(text):
            assert got == text


_ZONES: st.SearchStrategy[tzinfo] = st.sampled_from(
    [
        UTC,
        timezone(timedelta(0), "GMT"),
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=11)),
        timezone(timedelta(hours=14)),
    ]
)
# Years 1 and 9999 are left out: shifting them to UTC can leave datetime's range (a unit
# test below covers that fallback).
_LO, _HI = datetime(2, 1, 1), datetime(9998, 12, 31)
_DATES = st.one_of(st.datetimes(_LO, _HI), st.datetimes(_LO, _HI, timezones=_ZONES))


@given(d=_DATES)
def test_dates_are_iso_utc(d: datetime) -> None:
    m = t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=d, message="")
    out = json.loads(serialize.message_envelope("g", m))["data"]["message"]["chat"]["date"]
    assert ISO_RE.match(out), out
    back = datetime.fromisoformat(out)
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)
    expected = d if d.tzinfo is not None else d.replace(tzinfo=UTC)
    assert back == expected.replace(microsecond=0)


@given(seconds=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_telegram_dates_are_iso_utc(seconds: int) -> None:
    # The whole range a TL date can take: Telethon reads it as a signed int32.
    m = wire(t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(seconds), message=""))
    out = serialize.message(m)["date"]
    assert ISO_RE.match(out)
    assert datetime.fromisoformat(out).timestamp() == seconds


def test_date_out_of_range_after_utc_shift_does_not_crash() -> None:
    d = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    m = t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=d, message="")
    assert serialize.message(m)["date"] == "0001-01-01T00:00:00+05:00"


def _documented_fields(section: str) -> list[str]:
    """The field names of docs/schemas.md's table under `## <section>`, in order."""
    text = (Path(__file__).parent.parent / "docs" / "schemas.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `(\w+)` \|", body, flags=re.MULTILINE)


def test_items_have_exactly_the_fields_of_the_documented_schema_version() -> None:
    # Removing or renaming a field bumps SCHEMA_VERSION and docs/schemas.md together.
    docs = (Path(__file__).parent.parent / "docs" / "schemas.md").read_text()
    assert docs.startswith(f"# Item schemas (schema version {serialize.SCHEMA_VERSION})\n")
    users = [member(ann(), p) for p in (None, t.ChannelParticipant(user_id=1, date=ts(MAY_1)))]
    for user in users:
        assert list(serialize.user(user)) == _documented_fields("Member")
    for message in _corpus():
        assert list(serialize.message(message)) == _documented_fields("Message")


def _envelope_via_message(group: str, m: Any) -> bytes:
    return orjson.dumps({"event": "chats", "data": {
        "status": "success", "message": {"group": group, "chat": serialize.message(m)}}})


def test_message_envelope_fast_path_is_byte_identical_to_message() -> None:
    # message_envelope leaves UTC dates to orjson; it must produce exactly what message()
    # encoded would, for every media kind and service action, wire-parsed or built.
    corpus = _corpus() + [wire(m) for m in _corpus()[:5]] + [
        iterated(id=7, edit_date=ts(MAY_1 + 60)),
        t.Message(id=8, peer_id=t.PeerChannel(GROUP_ID), date=ts(MAY_1), message="x"),
    ]
    for m in corpus:
        assert serialize.message_envelope("grp", m) == _envelope_via_message("grp", m)


@given(seconds=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_message_envelope_dates_match_message_for_every_tl_date(seconds: int) -> None:
    m = wire(t.Message(id=1, peer_id=t.PeerChannel(GROUP_ID), date=ts(seconds), message="",
                       edit_date=ts(seconds)))
    assert serialize.message_envelope("g", m) == _envelope_via_message("g", m)


def test_user_envelope_fast_path_is_byte_identical_to_user() -> None:
    participants = [None, t.ChannelParticipant(user_id=1, date=ts(MAY_1)),
                    t.ChannelParticipantCreator(user_id=1, admin_rights=_RIGHTS),
                    t.ChannelParticipantAdmin(user_id=1, promoted_by=2, admin_rights=_RIGHTS,
                                              date=ts(MAY_1), rank="boss")]
    statuses = [None, t.UserStatusOnline(expires=ts(MAY_1)),
                t.UserStatusOffline(was_online=ts(MAY_1 - 5)), t.UserStatusRecently()]
    for participant in participants:
        for status in statuses:
            u = member(ann(status=status), participant)
            expected = orjson.dumps({"event": "users", "data": {
                "status": "success", "message": {"group": "g", "user": serialize.user(u)}}})
            assert serialize.user_envelope("g", u) == expected
