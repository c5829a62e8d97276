"""Basic groups (types.Chat, reached by InputPeerChat) and their upgrade to a supergroup.

A basic group is a SandboxChat with `basic` set: the same members and message records, other TL
faces. Upgrading one (World.upgrade) does what Telegram does:
- the old chat's history ends with MessageActionChatMigrateTo(channel_id); the old `Chat` is
  then `deactivated` and carries `migrated_to` (an InputChannel);
- a new megagroup takes the title, the members (with their roles and join dates) and a
  username; its history starts with MessageActionChannelMigrateFrom(title, chat_id);
- the new channel's ChannelFull has `migrated_from_chat_id` and `migrated_from_max_id` (the old
  chat's last message id), and channels.getFullChannel sends the old Chat along in `chats`, so
  a client can read both histories as one, as Telegram's apps show them.
Handlers: messages.getChats, messages.getFullChat, messages.getHistory on an InputPeerChat.

Simplifications: message ids of a basic group run 1..n per chat (Telegram numbers them in each
member's own message box), so messages.getMessages by id is not supported for basic groups; and
anyone logged in may read an upgraded group's old chat (Telegram lets its former members).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telethon.tl import types

from tgws.sandbox.call import Call
from tgws.sandbox.derive import when
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.history import select_history_page, timestamp
from tgws.sandbox.members import admin_rights

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat
    from tgws.sandbox.users import SandboxUser
    from tgws.sandbox.world import World


def upgrade(world: World, old: SandboxChat, *, username: str | None,
            date: int | None = None) -> SandboxChat:
    """Migrate basic group `old` to a new megagroup (see the module docstring)."""
    if not old.basic:
        raise ValueError(f"{old.title} is not a basic group")
    if old.migrated_to is not None:
        raise ValueError(f"{old.title} was already upgraded")
    creator = old.creator
    if creator is None:
        raise ValueError("a basic group needs its creator to upgrade it")
    if date is None:
        date = (old.last_date or old.date) + 60
    new = world.megagroup(username, title=old.title, date=date, about=old.about)
    for member in reversed(old.members_newest_first()):
        new.join(member.user, date=member.date, inviter=member.inviter, role=member.role,
                 rank=member.rank)
    old.post(creator, date=date, action=types.MessageActionChatMigrateTo(channel_id=new.id))
    new.post(creator, date=date, action=types.MessageActionChannelMigrateFrom(
        title=old.title, chat_id=old.id))
    old.migrated_to, new.migrated_from = new, old
    return new


# --- TL faces ---------------------------------------------------------------------------------

def chat_tl(chat: SandboxChat, viewer: SandboxUser | None) -> Any:
    """The `Chat` as `viewer` sees it."""
    member = chat.member(viewer)
    target = chat.migrated_to
    return types.Chat(
        id=chat.id, title=chat.title, photo=types.ChatPhotoEmpty(),
        participants_count=chat.members_count, date=when(member.date if member else chat.date),
        version=1, creator=(member is not None and member.role == "creator") or None,
        left=member is None or None, deactivated=target is not None or None,
        migrated_to=(types.InputChannel(channel_id=target.id, access_hash=target.access_hash)
                     if target is not None else None),
        admin_rights=(admin_rights(member.role, False)
                      if member is not None and member.is_admin else None))


def full_tl(chat: SandboxChat) -> Any:
    """`ChatFull` with every participant: what Telethon's iter_participants reads for a Chat."""
    participants: list[Any] = []
    for member in chat.members_newest_first():
        user_id = member.user.id
        inviter = (member.inviter or chat.creator or member.user).id
        if member.role == "creator":
            participants.append(types.ChatParticipantCreator(user_id=user_id))
        elif member.role == "admin":
            participants.append(types.ChatParticipantAdmin(
                user_id=user_id, inviter_id=inviter, date=when(member.date)))
        else:
            participants.append(types.ChatParticipant(
                user_id=user_id, inviter_id=inviter, date=when(member.date)))
    return types.ChatFull(
        id=chat.id, about=chat.about, notify_settings=types.PeerNotifySettings(),
        participants=types.ChatParticipants(chat_id=chat.id, participants=participants,
                                            version=1),
        chat_photo=types.PhotoEmpty(id=0), bot_info=[])


# --- handlers ---------------------------------------------------------------------------------

def chat_of(world: World, chat_id: int) -> SandboxChat:
    chat = world.chats.get(chat_id)
    if chat is None or not chat.basic:
        raise SandboxRpcError(400, "CHAT_ID_INVALID")
    return chat


def _faces(call: Call, chat: SandboxChat) -> list[Any]:
    """The Chat, and the supergroup it became (Telegram sends both along)."""
    faces = [chat_tl(chat, call.user)]
    if chat.migrated_to is not None:
        faces.append(chat.migrated_to.tl(call.user))
    return faces


def get_chats(call: Call, request: Any) -> Any:
    chats = [chat_of(call.world, chat_id) for chat_id in request.id]
    return types.messages.Chats(chats=[chat_tl(chat, call.user) for chat in chats])


def get_full_chat(call: Call, request: Any) -> Any:
    chat = chat_of(call.world, request.chat_id)
    users = [m.user.tl(is_self=m.user is call.user) for m in chat.members_newest_first()]
    return types.messages.ChatFull(full_chat=full_tl(chat), chats=_faces(call, chat),
                                   users=users)


def get_history(call: Call, request: Any) -> Any:
    """messages.getHistory on an InputPeerChat: a MessagesSlice while there is more than one
    page (Telethon pages on), else messages.Messages."""
    chat = chat_of(call.world, request.peer.chat_id)
    start, ids = select_history_page(
        chat, offset_id=request.offset_id, offset_date=timestamp(request.offset_date),
        add_offset=request.add_offset, limit=request.limit, max_id=request.max_id,
        min_id=request.min_id, short=call.world.short_pages)
    user_ids = dict.fromkeys(uid for i in ids for uid in chat.message_user_ids(i))
    users = [call.world.users[uid].tl(is_self=uid == getattr(call.user, "id", None))
             for uid in user_ids if uid in call.world.users]
    messages = [chat.message_tl(i) for i in ids]
    count = chat.count
    chat.served("history", start, ids)
    if count > len(messages):
        return types.messages.MessagesSlice(count=count, messages=messages, topics=[],
                                            chats=_faces(call, chat), users=users)
    return types.messages.Messages(messages=messages, topics=[], chats=_faces(call, chat),
                                   users=users)
