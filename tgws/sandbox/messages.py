"""An explicitly posted sandbox message and the `Message`/`MessageService` Telegram shows for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types

from tgws.sandbox.derive import when
from tgws.sandbox.media import action_user_ids, build_media
from tgws.sandbox.users import SandboxUser


@dataclass(eq=False, slots=True)
class SandboxMessage:
    """One message record. Never changed in place (an edit replaces the record), so its
    serialized form is cached."""

    id: int
    chat_id: int
    broadcast: bool
    date: int
    sender: SandboxUser | None
    text: str = ""
    reply_to: int | None = None
    fwd_user: SandboxUser | None = None
    fwd_date: int | None = None
    media: Any = None  # a kind from media.MEDIA_KINDS, or a TL MessageMedia object
    action: Any = None  # a TL MessageAction: makes this a service message
    views: int | None = None
    forwards: int | None = None
    replies: int | None = None
    pinned: bool = False
    edit_date: int | None = None
    grouped_id: int | None = None
    post_author: str | None = None
    basic: bool = False  # in a basic group: peer_id is a PeerChat
    _wire: bytes | None = field(default=None, repr=False)

    def tl(self) -> Any:
        """A fresh TL object: Telethon mutates what it receives (`_finish_init`), so objects
        handed over without the wire round-trip must never be shared between requests."""
        peer = (types.PeerChat(chat_id=self.chat_id) if self.basic
                else types.PeerChannel(channel_id=self.chat_id))
        from_id = None if self.sender is None else types.PeerUser(user_id=self.sender.id)
        reply = (None if self.reply_to is None
                 else types.MessageReplyHeader(reply_to_msg_id=self.reply_to))
        if self.action is not None:
            return types.MessageService(id=self.id, peer_id=peer, date=when(self.date),
                                        action=self.action, from_id=from_id, reply_to=reply,
                                        post=self.broadcast or None)
        media = self.media
        if isinstance(media, str):
            media = build_media(media, self.chat_id * 1_000_003 + self.id, self.date)
        fwd = None
        if self.fwd_user is not None:
            fwd = types.MessageFwdHeader(
                date=when(self.fwd_date if self.fwd_date is not None else self.date - 3600),
                from_id=types.PeerUser(user_id=self.fwd_user.id))
        # views and forwards share one flag bit in the schema: both or neither.
        views, forwards = self.views, self.forwards
        if (views is None) != (forwards is None):
            views, forwards = views or 0, forwards or 0
        replies = (None if self.replies is None
                   else types.MessageReplies(replies=self.replies, replies_pts=self.id))
        return types.Message(
            id=self.id, peer_id=peer, date=when(self.date), message=self.text,
            post=self.broadcast or None, from_id=from_id, fwd_from=fwd, reply_to=reply,
            media=media, views=views, forwards=forwards, replies=replies,
            pinned=self.pinned or None,
            edit_date=None if self.edit_date is None else when(self.edit_date),
            grouped_id=self.grouped_id, post_author=self.post_author)

    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = bytes(self.tl())
        return self._wire

    def user_ids(self) -> list[int]:
        """Users this message names; Telegram sends them along in the page's `users`."""
        ids = [] if self.sender is None else [self.sender.id]
        if self.fwd_user is not None:
            ids.append(self.fwd_user.id)
        if self.action is not None:
            ids.extend(action_user_ids(self.action))
        return ids
