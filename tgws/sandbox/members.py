"""Chat membership: who joined when, invited by whom, in which role; and how Telegram lists it.

Listing follows channels.getParticipants as clients observe it:
- order: most recent join first (ChannelParticipantsRecent and an empty search alike);
- `count` is the number of matching members, but only the first `participants_cap` of them
  (10,000 on Telegram) can be paged through: an offset past the cap returns nothing, which is
  why clients sweep search prefixes to see everyone in a larger group;
- a broadcast channel's subscribers are for its admins only: CHAT_ADMIN_REQUIRED otherwise;
- a member who leaves (or is kicked or banned) moves everyone who joined before it up one
  position, and one who joins moves everyone down one: Telegram pages by position, so a client
  paging by offset while that happens skips or repeats a member (chats.py `leave`, page hooks);
- banned members are listed, for admins only, under ChannelParticipantsKicked as
  ChannelParticipantBanned (dated by the ban, most recent first);
- a megagroup whose admins hid the member list shows non-admins only its admins and creator
  (what clients report, e.g. gram-js/gramjs#487: "~9k members but the query returns only ~20
  (all of them admins + original creator)"), with `count` counting just those.
Telegram's schema shows an inviter only in the viewer's own entry (ChannelParticipantSelf, or
ChannelParticipantAdmin with self set); others' entries show the join date (and role) only. The
world still records every inviter, and `add_user` service messages name them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon.tl import types

from tgws.sandbox.derive import mix64, when
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.users import SandboxUser

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat

ROLES = ("member", "admin", "creator")
PAGE_MAX = 200  # Telegram's limit per channels.getParticipants call

_ADMIN_RIGHTS = dict(change_info=True, delete_messages=True, ban_users=True, invite_users=True,
                     pin_messages=True, manage_call=True, other=True)


def admin_rights(role: str, broadcast: bool) -> Any:
    extra = dict(add_admins=True) if role == "creator" else {}
    if broadcast:
        extra.update(post_messages=True, edit_messages=True)
    return types.ChatAdminRights(**_ADMIN_RIGHTS, **extra)


@dataclass(eq=False, slots=True)
class Member:
    user: SandboxUser
    date: int
    inviter: SandboxUser | None
    role: str
    rank: str | None
    seq: int  # creation order, breaks ties between equal join dates
    _wire: bytes | None = field(default=None, repr=False)

    @property
    def is_admin(self) -> bool:
        return self.role != "member"

    def tl(self, chat: SandboxChat, viewer: SandboxUser | None) -> Any:
        """The ChannelParticipant* `viewer` sees for this member."""
        user_id = self.user.id
        if chat.member(user_id) is not self and chat.is_banned(user_id):
            return types.ChannelParticipantBanned(
                peer=types.PeerUser(user_id=user_id), left=True,
                kicked_by=(chat.creator or self.user).id, date=when(self.date),
                banned_rights=types.ChatBannedRights(until_date=when(0), view_messages=True))
        is_self = viewer is not None and viewer.id == user_id
        if self.role == "creator":
            return types.ChannelParticipantCreator(
                user_id=user_id, admin_rights=admin_rights("creator", chat.broadcast),
                rank=self.rank)
        if self.role == "admin":
            promoter = chat.creator or self.inviter or self.user
            return types.ChannelParticipantAdmin(
                user_id=user_id, promoted_by=promoter.id, date=when(self.date),
                admin_rights=admin_rights("admin", chat.broadcast), is_self=is_self or None,
                # The schema ties inviter_id to the self flag: only you see who invited you.
                inviter_id=(self.inviter or self.user).id if is_self else None, rank=self.rank,
                can_edit=(viewer is not None and chat.creator is viewer) or None)
        if is_self:
            inviter = self.inviter or self.user
            return types.ChannelParticipantSelf(user_id=user_id, inviter_id=inviter.id,
                                                date=when(self.date))
        return types.ChannelParticipant(user_id=user_id, date=when(self.date), rank=self.rank)

    def wire(self, chat: SandboxChat, viewer: SandboxUser | None) -> bytes:
        # Only the plain member entry looks the same to every viewer, so only it is cached.
        if (self.role != "member" or (viewer is not None and viewer.id == self.user.id)
                or chat.member(self.user.id) is not self):
            return bytes(self.tl(chat, viewer))
        if self._wire is None:
            self._wire = bytes(self.tl(chat, viewer))
        return self._wire


def _matching(chat: SandboxChat, flt: Any, viewer: SandboxUser | None) -> list[Member]:
    newest_first = chat.members_newest_first()
    if isinstance(flt, types.ChannelParticipantsRecent):
        return newest_first
    if isinstance(flt, (types.ChannelParticipantsSearch, types.ChannelParticipantsMentions)):
        q = (flt.q or "").strip()
        return newest_first if not q else _search(chat, newest_first, q)
    if isinstance(flt, types.ChannelParticipantsAdmins):
        admins = [m for m in newest_first if m.is_admin]
        admins.sort(key=lambda m: m.role != "creator")  # the creator first, as Telegram does
        return admins
    if isinstance(flt, types.ChannelParticipantsBots):
        return [m for m in newest_first if m.user.bot]
    if isinstance(flt, types.ChannelParticipantsKicked):
        if not chat.is_admin(viewer):
            raise SandboxRpcError(400, "CHAT_ADMIN_REQUIRED")
        q = (flt.q or "").strip()
        return [m for m in chat.banned_newest_first() if not q or m.user.matches(q)]
    if isinstance(flt, types.ChannelParticipantsBanned):
        if not chat.is_admin(viewer):
            raise SandboxRpcError(400, "CHAT_ADMIN_REQUIRED")
        return []  # the sandbox restricts nobody short of a ban
    if isinstance(flt, types.ChannelParticipantsContacts):
        return []  # the sandbox has no contact lists
    raise SandboxRpcError(400, "FILTER_NOT_SUPPORTED_BY_SANDBOX")


# A prefix sweep asks for each query page after page, and every page scanned all members
# again (one sweep of a 12,000-member group: 134 scans, most of the test suite's time in
# it). Names never change once made, and a join or leave builds a new newest-first list,
# so a query's matches are kept per chat for as long as that list is the current one.
_SEARCHES: weakref.WeakKeyDictionary[SandboxChat, tuple[list[Member], dict[str, list[Member]]]] \
    = weakref.WeakKeyDictionary()


def _search(chat: SandboxChat, newest_first: list[Member], q: str) -> list[Member]:
    """The members whose names match `q`, newest first (callers never change the list)."""
    held = _SEARCHES.get(chat)
    if held is None or held[0] is not newest_first:
        held = _SEARCHES[chat] = (newest_first, {})
    found = held[1].get(q)
    if found is None:
        found = held[1][q] = [m for m in newest_first if m.user.matches(q)]
    return found


def select_participants(chat: SandboxChat, viewer: SandboxUser | None, flt: Any, offset: int,
                        limit: int, *, cap: int, short: bool) -> tuple[int, list[Member]]:
    """(count, the page of members) for one channels.getParticipants call."""
    viewer_admin = chat.is_admin(viewer)
    if chat.broadcast and not viewer_admin:
        raise SandboxRpcError(400, "CHAT_ADMIN_REQUIRED")
    found = _matching(chat, flt, viewer)
    if chat.participants_hidden and not viewer_admin:
        found = [m for m in found if m.is_admin]
    offset = max(offset, 0)
    end = min(offset + max(0, min(limit, PAGE_MAX)), cap, len(found))
    page = found[offset:end] if offset < end else []
    if short and len(page) > 1:
        # Drop the tail of some pages: `offset += len(participants)` refetches it.
        h = mix64(chat.id * 1_000_003 + offset * 7 + limit)
        if h % 3 == 0:
            page = page[: 1 + (h >> 8) % (len(page) - 1)]
    return len(found), page
