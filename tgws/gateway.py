"""The one module that talks to Telethon.

Every Telethon call tgws makes is here (connect, send code, sign in, 2FA, resolve, iterate
participants and messages, log out), and every Telethon/RPC exception is translated into
tgws.errors.GatewayError at this boundary, so the rest of the daemon never imports Telethon.
Two neighbours serve it and nothing else: telegram_clients.py builds the clients (options,
connection mode, the operator's RSA key) and rpc_errors.py groups Telegram's RPC errors.

Accounts: one TelegramClient per API key (each API key owns at most one Telegram account),
shared by all connections of that key and reference-counted; connected on first use,
disconnected `telegram.idle_disconnect` seconds after its last connection is released.
There is never a second client on the same auth key in this process.

Flood waits: clients are built with flood_sleep_threshold=0, so Telethon raises every
FloodWaitError to us. `_with_flood_control` then waits (when the wait is within
`telegram.flood_wait_ceiling`, after telling the caller through its `on_flood` callback so
the websocket client sees a progress reply) and retries, or raises FloodWait(seconds).

Failures and stalls (tgws/resilience.py): every connect runs under [telegram]
connect_timeout (the connect lock's wait included), every call under call_timeout; a 5xx,
a dropped or non-MTProto connection or a deadline becomes TelegramUnavailable, and a
stalled or broken connection is closed so the next call reconnects. Streams (`_batches`)
retry those stream_retries times in a row with backoff, resuming after the last item.

Sessions: Telethon's StringSession (DC, address, auth key) is kept in the store as a secret
and saved after sign-in. The entity cache (username -> id, access hash, kind) lives in the
store too, so a restart does not repeat contacts.ResolveUsername, which Telegram rate-limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from telethon import errors, functions, types
from telethon.sessions import StringSession

from tgws import fastpath, member_paging, resilience
from tgws.config import TelegramConfig
from tgws.errors import (
    CodeInvalid,
    FloodWait,
    GatewayError,
    LoginFlood,
    MembersHidden,
    NotAGroup,
    PasswordInvalid,
    PasswordNeeded,
    PeerNotFound,
    PhoneInvalid,
    SessionLocked,
    TelegramFailure,
    TelegramUnavailable,
)
from tgws.login_guard import compact_phone
from tgws.rpc_errors import (
    CODE_ERRORS,
    PASSWORD_ERRORS,
    PASSWORD_FLOOD_ERRORS,
    PEER_ERRORS,
    PHONE_ERRORS,
    PHONE_FLOOD_ERRORS,
    STALE_PEER_ERRORS,
)
from tgws.rpc_errors import FLOOD_ERRORS as _FLOOD_ERRORS
from tgws.rpc_errors import translate as _translate
from tgws.store import EntityRecord, SessionUnreadable, Store, normalize_username
from tgws.telegram_clients import ClientFactory

log = logging.getLogger("tgws.gateway")

T = TypeVar("T")
ItemT = TypeVar("ItemT")
OnFlood = Callable[[int], Awaitable[None]]
OnRetry = Callable[[float], Awaitable[None]]  # told the pause before a stream's next attempt

GROUP_KINDS = ("megagroup", "gigagroup", "chat")
PAGE_MESSAGES = 100  # Telegram's page size for messages.getHistory
PAGE_MEMBERS = 200  # Telegram's page size for channels.getParticipants
REVOKE_LOGOUT_DEADLINE = 30.0  # seconds for connect + auth.LogOut of a revoked key's session
REVOKE_LOGOUT_RETRY = 60  # seconds before a failed revocation log-out is tried again
MEMBER_CAP = 10_000  # plain paging lists at most about this many members
SWEEP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"



@dataclass(frozen=True, slots=True)
class Peer:
    """A resolved group or channel, as the rest of tgws sees it."""

    id: int
    access_hash: int
    kind: str  # 'megagroup' | 'gigagroup' | 'chat' | 'broadcast' | 'user'
    title: str
    username: str

    @property
    def is_group(self) -> bool:
        return self.kind in GROUP_KINDS

    def input_peer(self) -> Any:
        if self.kind == "chat":
            return types.InputPeerChat(self.id)
        if self.kind == "user":
            return types.InputPeerUser(self.id, self.access_hash)
        return types.InputPeerChannel(self.id, self.access_hash)


@dataclass(slots=True)
class Page(Generic[ItemT]):
    """One batch of a stream: Telethon Messages, or Users with `.participant` set."""

    items: list[ItemT]
    total: int | None  # Telegram's count of the whole listing, when it gave one


def classify(entity: Any) -> str:
    if isinstance(entity, types.Channel):
        if entity.megagroup:
            return "megagroup"
        if getattr(entity, "gigagroup", False):
            return "gigagroup"
        return "broadcast"
    if isinstance(entity, types.Chat | types.ChatForbidden):
        return "chat"
    return "user"


# --- accounts ------------------------------------------------------------------------------
class Account:
    """The Telegram account behind one API key: one TelegramClient, shared by its connections."""

    def __init__(self, gateway: Gateway, api_key_id: int) -> None:
        self.gateway = gateway
        self.api_key_id = api_key_id
        self.holders = 0  # connections holding this account (a reference count)
        self._client: Any = None
        self._connect_lock = asyncio.Lock()
        self._login_phone: str | None = None
        # The connection that asked for the pending code: only it may send the code (two
        # connections of one key must not sign in each other's phone).
        self._login_owner: object = None
        self._idle_task: asyncio.Task[None] | None = None
        self.pending = resilience.Pending()  # calls in flight, for /healthz
        self._generation = 0  # one more per successful connect (see _unavailable)

    @property
    def store(self) -> Store:
        return self.gateway.store

    @property
    def config(self) -> TelegramConfig:
        return self.gateway.config

    async def has_session(self) -> bool:
        return await self.store.has_session(self.api_key_id)

    async def _ensure_client(self) -> Any:
        """The connected client, connected first if need be, within [telegram] connect_timeout.

        The deadline covers waiting for the connect lock too, so one stalled key exchange
        holds the other requests of this API key for connect_timeout at most.
        """
        limit = self.config.connect_timeout
        try:
            async with asyncio.timeout(limit):
                async with self._connect_lock:
                    client = self._client
                    if client is not None and client.is_connected():
                        return client
                    if client is None:
                        try:
                            saved = await self.store.load_session(self.api_key_id)
                        except SessionUnreadable as err:
                            log.error("account of key #%d: %s", self.api_key_id, err)
                            raise SessionLocked(str(err)) from None
                        client = self._client = self.gateway.factory(StringSession(saved or None))
                    with self.pending.call(limit):
                        await self._connect(client)
                    return client
        except resilience.TRANSIENT as err:  # the deadline's TimeoutError included
            raise self._failed(resilience.unavailable(err, deadline=limit)) from None
        except asyncio.CancelledError:
            if not resilience.cancelled_by_disconnect():
                raise
            raise self._failed(TelegramUnavailable("connection closed while connecting")) \
                from None
        except errors.RPCError as err:
            raise _translate(err) from None

    async def _connect(self, client: Any) -> None:
        try:
            await client.connect()
        except BaseException:
            # Cut short (deadline) or failed half-way: the socket may be open, and Telethon
            # may count itself connected without having sent its first request.
            await self._close_client(client)
            raise
        self._generation += 1
        self.pending.ok()

    async def _close_client(self, client: Any) -> None:
        """Disconnect, bounded: Telethon's own close waits up to 10 s for a silent peer."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.connect_timeout):
                await client.disconnect()

    def _failed(self, failure: TelegramUnavailable) -> TelegramUnavailable:
        self.pending.failed()
        log.warning("account of key #%d: %s", self.api_key_id, failure)
        return failure

    async def _unavailable(self, err: BaseException, generation: int) -> TelegramUnavailable:
        """Record a transient failure; a stalled or broken connection is closed so the next
        attempt reconnects (only once per connection, however many calls saw it fail)."""
        failure = self._failed(resilience.unavailable(err, deadline=self.config.call_timeout))
        client = self._client
        if (resilience.needs_new_connection(err) and generation == self._generation
                and client is not None and client.is_connected()):
            await self._close_client(client)
        return failure

    async def _attempt(self, request: Callable[[Any], Awaitable[T]]) -> T:
        """One call within [telegram] call_timeout; transient failures -> TelegramUnavailable."""
        client = await self._ensure_client()
        generation = self._generation
        limit = self.config.call_timeout
        try:
            with self.pending.call(limit):
                async with asyncio.timeout(limit):
                    result = await request(client)
        except resilience.TRANSIENT as err:
            raise await self._unavailable(err, generation) from None
        except asyncio.CancelledError:
            if not resilience.cancelled_by_disconnect():
                raise
            raise await self._unavailable(ConnectionError("disconnected"), generation) from None
        self.pending.ok()
        return result

    async def _call(self, request: Callable[[Any], Awaitable[T]], on_flood: OnFlood | None) -> T:
        return await self._with_flood_control(lambda: self._attempt(request), on_flood)

    async def _with_flood_control(self, attempt: Callable[[], Awaitable[T]],
                                  on_flood: OnFlood | None) -> T:
        while True:
            try:
                return await attempt()
            except _FLOOD_ERRORS as err:
                await self._flood_wait(int(err.seconds), on_flood)

    async def _flood_wait(self, seconds: int, on_flood: OnFlood | None) -> None:
        if seconds > self.config.flood_wait_ceiling:
            raise FloodWait(seconds)
        log.info("account of key #%d: flood wait %d s", self.api_key_id, seconds)
        if on_flood is not None:
            await on_flood(seconds)
        await asyncio.sleep(seconds)

    # -- login ----------------------------------------------------------------------------
    @property
    def login_owner(self) -> object:
        """The connection that asked for the pending code (or is asking now), or None."""
        return self._login_owner

    async def send_code(self, phone: str, on_flood: OnFlood | None = None, *,
                        owner: object = None) -> None:
        compact = compact_phone(phone)
        if compact is None:
            raise PhoneInvalid("malformed phone number")
        # Claimed before the first await, so a second connection asking at the same moment
        # sees the claim (the handler refuses it) instead of racing this one.
        self._login_phone, self._login_owner = None, owner
        try:
            await self._call(lambda c: c.send_code_request(compact), on_flood)
        except PHONE_FLOOD_ERRORS:
            raise LoginFlood("phone") from None
        except PHONE_ERRORS:
            raise PhoneInvalid("Telegram refused the phone number") from None
        except errors.RPCError as err:
            raise _translate(err) from None
        finally:
            # The claim ends here either way: a failure leaves nothing pending (so another
            # connection may ask), a success makes it the pending login just below.
            if self._login_owner is owner:
                self._login_owner = None
        self._login_phone, self._login_owner = compact, owner

    async def sign_in(self, code: str, on_flood: OnFlood | None = None, *,
                      owner: object = None) -> None:
        phone = self._login_phone
        if phone is None or owner is not self._login_owner:
            raise CodeInvalid("no code was sent on this connection")
        if not code.strip():
            raise CodeInvalid("empty code")
        try:
            await self._call(lambda c: c.sign_in(phone=phone, code=code.strip()), on_flood)
        except errors.SessionPasswordNeededError:
            raise PasswordNeeded() from None
        except CODE_ERRORS:
            raise CodeInvalid("Telegram refused the code") from None
        except PHONE_FLOOD_ERRORS:
            raise LoginFlood("phone") from None
        except PASSWORD_FLOOD_ERRORS:
            raise LoginFlood("password") from None
        except PHONE_ERRORS:
            raise PhoneInvalid("Telegram refused the phone number") from None
        except errors.RPCError as err:
            raise _translate(err) from None
        await self._logged_in()

    async def check_password(self, password: str, on_flood: OnFlood | None = None) -> None:
        if not password:
            raise PasswordInvalid("empty password")
        try:
            await self._call(lambda c: c.sign_in(password=password), on_flood)
        except PASSWORD_FLOOD_ERRORS:
            raise LoginFlood("password") from None
        except PASSWORD_ERRORS:
            raise PasswordInvalid("Telegram refused the password") from None
        except errors.RPCError as err:
            raise _translate(err) from None
        await self._logged_in()

    async def _logged_in(self) -> None:
        client = self._client
        self._login_phone = self._login_owner = None
        try:
            me = await self._attempt(lambda c: c.get_me(input_peer=True))
        except errors.RPCError as err:
            raise _translate(err) from None
        await self.store.save_session(self.api_key_id, client.session.save(),
                                      getattr(me, "user_id", None))

    async def log_out(self) -> None:
        """auth.LogOut at Telegram, then forget the session (and entity cache) locally."""
        if await self.has_session():
            try:
                await self._attempt(lambda c: c.log_out())
            except (errors.RPCError, GatewayError) as err:  # unavailable, locked, revoked
                # The local session goes anyway: the user asked to be logged out.
                log.warning("account of key #%d: log out at Telegram failed: %s",
                            self.api_key_id, type(err).__name__)
        await self.store.delete_session(self.api_key_id)
        await self._drop_client()

    async def forget_session(self) -> None:
        """Telegram no longer accepts the session (revoked in the app, say): drop it."""
        await self.store.delete_session(self.api_key_id)
        await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        self._login_phone = self._login_owner = None
        if client is not None:
            await self._close_client(client)

    # -- resolving ------------------------------------------------------------------------
    async def resolve(self, name: str, on_flood: OnFlood | None = None) -> Peer:
        username = normalize_username(name)
        if not username:
            raise PeerNotFound(name)
        cached = await self.store.lookup_entity(
            self.api_key_id, username, max_age=self.config.entity_cache_ttl or None)
        if cached is not None:
            peer = Peer(cached.peer_id, cached.access_hash, cached.kind, cached.title,
                        cached.username)
            if await self._still_named(peer, username, on_flood):
                return peer
            # The access hash went stale, we lost access, or the name changed hands.
            log.info("account of key #%d: cached entry for %r is stale; resolving again",
                     self.api_key_id, username)
            await self.store.forget_entity(self.api_key_id, username)
        try:
            # contacts.ResolveUsername itself, not get_entity: Telethon turns a username
            # that is not taken into a ValueError it also uses for other failures, and only
            # USERNAME_NOT_OCCUPIED / USERNAME_INVALID mean "does not exist".
            result = await self._call(
                lambda c: c(functions.contacts.ResolveUsernameRequest(username)), on_flood)
        except PEER_ERRORS:
            raise PeerNotFound(name) from None
        except errors.RPCError as err:
            raise _translate(err) from None
        entity = _resolved_entity(result)
        if entity is None:
            raise PeerNotFound(name)
        if isinstance(entity, types.ChannelForbidden):
            raise TelegramFailure("CHANNEL_PRIVATE")
        peer = Peer(
            id=int(entity.id),
            access_hash=int(getattr(entity, "access_hash", 0) or 0),
            kind=classify(entity),
            title=str(getattr(entity, "title", None) or getattr(entity, "first_name", "") or ""),
            username=str(getattr(entity, "username", None) or username),
        )
        # Cached only under the username Telegram confirms the entity has: an answer found
        # by anything else (an id, a phone, a title) is not a username's and must not pose
        # as one.
        if str(getattr(entity, "username", None) or "").lower() == username.lower():
            await self.store.cache_entities(self.api_key_id, [EntityRecord(
                peer_id=peer.id, access_hash=peer.access_hash, kind=peer.kind,
                username=username, title=peer.title)])
        return peer

    async def _still_named(self, peer: Peer, username: str, on_flood: OnFlood | None) -> bool:
        """Whether a cached channel still opens with its access hash and still bears the name.

        One channels.GetChannels per cached resolve (not rate-limited like
        contacts.ResolveUsername): a stale entry would otherwise fail every request, or
        stream the old chat of a username that changed hands, until it expires.
        """
        if peer.kind not in ("megagroup", "gigagroup", "broadcast"):
            return True
        request = functions.channels.GetChannelsRequest(
            [types.InputChannel(peer.id, peer.access_hash)])
        try:
            result = await self._call(lambda c: c(request), on_flood)
        except STALE_PEER_ERRORS:
            return False
        except errors.RPCError as err:
            raise _translate(err) from None
        chat = next((c for c in result.chats if c.id == peer.id), None)
        if not isinstance(chat, types.Channel):
            return False  # ChannelForbidden: no longer ours to read
        names = {str(chat.username or "").lower()}
        names.update(str(u.username).lower() for u in (chat.usernames or ()) if u.active)
        return username.lower() in names

    # -- streaming ------------------------------------------------------------------------
    async def message_pages(self, peer: Peer, *, after_id: int, batch: int = PAGE_MESSAGES,
                            on_flood: OnFlood | None = None,
                            on_retry: OnRetry | None = None) -> AsyncIterator[Page[Any]]:
        """Messages with id > after_id, oldest first, in batches of `batch`."""

        def iterate(client: Any) -> Any:
            # wait_time=0: Telethon would otherwise sleep 1 s per page past 3000 messages;
            # Telegram's own flood waits are the only pacing we accept.
            return client.iter_messages(peer.input_peer(), limit=None, reverse=True,
                                        min_id=after_id, wait_time=0)

        async for page in self._batches(iterate, batch, on_flood, on_retry):
            yield page

    async def migrated_from(self, peer: Peer, on_flood: OnFlood | None = None) -> Peer | None:
        """The basic group `peer` was upgraded from (its history comes first), or None.

        Telegram's apps show an upgraded group's two histories as one: the old basic group's
        (reached by InputPeerChat) and then the supergroup's. channels.getFullChannel names
        the old chat (migrated_from_chat_id) and sends it along in `chats`.
        """
        if peer.kind != "megagroup":
            return None
        try:
            full = await self._call(
                lambda c: c(functions.channels.GetFullChannelRequest(peer.input_peer())),
                on_flood)
        except errors.RPCError as err:
            raise _translate(err) from None
        old_id = getattr(full.full_chat, "migrated_from_chat_id", None)
        if not old_id:
            return None
        old = next((c for c in full.chats if c.id == old_id and classify(c) == "chat"), None)
        title = str(getattr(old, "title", "") or "")
        return Peer(int(old_id), 0, "chat", title, peer.username)

    async def member_total(self, peer: Peer, on_flood: OnFlood | None = None) -> int | None:
        """Telegram's participant count; raises MembersHidden when we may not list them."""
        if peer.kind == "chat":
            return None
        try:
            full = await self._call(
                lambda c: c(functions.channels.GetFullChannelRequest(peer.input_peer())),
                on_flood)
        except errors.RPCError as err:
            raise _translate(err) from None
        channel = next((c for c in full.chats if c.id == peer.id), None)
        is_admin = bool(channel is not None and (channel.creator or channel.admin_rights))
        if getattr(full.full_chat, "participants_hidden", False) and not is_admin:
            raise MembersHidden(peer.username)
        count = getattr(full.full_chat, "participants_count", None)
        return int(count) if count is not None else None

    async def member_pages(self, peer: Peer, *, sweep: bool, batch: int = PAGE_MEMBERS,
                           on_flood: OnFlood | None = None,
                           on_retry: OnRetry | None = None) -> AsyncIterator[Page[Any]]:
        """All members Telegram will list; with `sweep`, also search prefixes past the cap."""
        if not peer.is_group:
            raise NotAGroup(peer.username)
        seen: set[int] = set()
        words = member_paging.WordIndex()
        queries = [""]
        while queries:
            query = queries.pop(0)
            found = 0

            def iterate(client: Any, query: str = query) -> Any:
                if peer.kind == "chat":  # a basic group: one messages.getFullChat
                    return client.iter_participants(peer.input_peer(), search=query)
                # Supergroups page by position: overlapping pages, so a member who leaves
                # mid-listing cannot hide another (tgws/member_paging.py).
                return member_paging.OverlapPager(
                    client, types.InputChannel(peer.id, peer.access_hash), query,
                    cap=MEMBER_CAP)

            async for page in self._batches(iterate, batch, on_flood, on_retry):
                items = page.items
                found += len(items)
                if sweep:
                    # Each query de-duplicates its own pages; a sweep runs many.
                    items = [u for u in items if u.id not in seen]
                    seen.update(u.id for u in items)
                    words.add(items)
                if items:
                    # A search's count is that search's, not the group's.
                    yield Page(items, page.total if not query else None)
            if sweep and found >= MEMBER_CAP:
                # This query hit Telegram's cap: split it by one more character, Latin and
                # every character that follows it in the names seen (search matches word
                # prefixes in their own script: "Иван" is never found by a Latin query).
                queries.extend(words.children(query, SWEEP_ALPHABET))

    async def _batches(self, iterate: Callable[[Any], Any], size: int,
                       on_flood: OnFlood | None,
                       on_retry: OnRetry | None) -> AsyncIterator[Page[Any]]:
        """Pages of `size` items from the Telethon iterator `iterate(client)` returns.

        Flood waits are waited out in place. A transient failure (a 5xx after Telethon's
        retries, a dropped connection, no answer within call_timeout) is retried after a
        backoff, stream_retries times in a row, then raised as TelegramUnavailable.

        Resuming is exact: an error inside RequestIter.__anext__ (Telegram's answer, or
        our deadline cancelling the request) leaves the iterator's offsets untouched, so
        calling __anext__ again, once the client is connected again, re-sends the same
        page: nothing is skipped or repeated, and items already taken stay in `items`.
        An iterator that failed before its first item is simply made anew.
        """
        cfg = self.config
        limit = cfg.call_timeout
        backoff = resilience.Backoff(cfg.stream_retries, cfg.retry_backoff)
        iterator: Any = None
        started = False  # the iterator handed out an item: re-drive it, never remake it
        bulk = False
        reconnect = False
        generation = self._generation
        items: list[Any] = []
        while True:
            # The hot loop (once per page when slicing, else per item): errors inline.
            try:
                if iterator is None or reconnect:
                    client = await self._ensure_client()
                    generation, reconnect = self._generation, False
                    if iterator is None:
                        iterator = iterate(client)
                        # Take the rest of Telethon's loaded page in one slice, where its
                        # internals allow.
                        bulk = fastpath.can_slice(iterator)
                with self.pending.call(limit):
                    async with asyncio.timeout(limit):
                        item = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except _FLOOD_ERRORS as err:
                await self._flood_wait(int(err.seconds), on_flood)
                continue
            except resilience.TRANSIENT as err:  # before RPCError: 5xx are RPCErrors too
                failure = await self._unavailable(err, generation)
            except TelegramUnavailable as err:  # from _ensure_client
                failure = err
            except asyncio.CancelledError:
                if not resilience.cancelled_by_disconnect():
                    raise
                failure = await self._unavailable(ConnectionError("disconnected"), generation)
            except errors.ChatAdminRequiredError:
                # Listing members of a channel (or a hidden member list) needs admin rights.
                raise MembersHidden("admin rights required") from None
            except errors.RPCError as err:
                raise _translate(err) from None
            else:
                if not started:
                    started = True
                    self.pending.ok()
                backoff.succeeded()
                items.append(item)
                if bulk:
                    fastpath.take_loaded(iterator, items, size)
                if len(items) >= size:
                    yield Page(items, getattr(iterator, "total", None))
                    items = []
                continue
            await self._pause_before_retry(backoff, failure, on_retry)
            reconnect = True
            if not started:
                iterator = None
        if items:
            yield Page(items, getattr(iterator, "total", None))

    async def _pause_before_retry(self, backoff: resilience.Backoff,
                                  failure: TelegramUnavailable,
                                  on_retry: OnRetry | None) -> None:
        pause = backoff.failed()
        if pause is None:
            log.warning("account of key #%d: stream gives up after %d retries in a row",
                        self.api_key_id, backoff.budget)
            raise failure
        log.info("account of key #%d: retry %d of %d in %.1f s", self.api_key_id,
                 backoff.failures, backoff.budget, pause)
        if on_retry is not None:
            await on_retry(pause)
        await asyncio.sleep(pause)

    # -- lifecycle ------------------------------------------------------------------------
    async def disconnect(self) -> None:
        client = self._client
        if client is not None:
            await self._close_client(client)


def _resolved_entity(result: Any) -> Any:
    """The user or chat a contacts.ResolvedPeer names, or None when it is not included."""
    peer = result.peer
    if isinstance(peer, types.PeerUser):
        pool, wanted = result.users, peer.user_id
    elif isinstance(peer, types.PeerChannel):
        pool, wanted = result.chats, peer.channel_id
    else:
        pool, wanted = result.chats, getattr(peer, "chat_id", None)
    return next((e for e in pool if e.id == wanted), None)


class Gateway:
    """All Telegram accounts of this process, one per API key."""

    def __init__(self, config: TelegramConfig, store: Store, factory: ClientFactory) -> None:
        self.config = config
        self.store = store
        self.factory = factory
        self._accounts: dict[int, Account] = {}
        self._sweep: asyncio.Task[None] | None = None
        self._logout_retry_at: dict[int, float] = {}  # revoked key id -> loop time

    def acquire(self, api_key_id: int) -> Account:
        account = self._accounts.get(api_key_id)
        if account is None:
            account = self._accounts[api_key_id] = Account(self, api_key_id)
        account.holders += 1
        if account._idle_task is not None:
            account._idle_task.cancel()
            account._idle_task = None
        return account

    def release(self, account: Account) -> None:
        account.holders -= 1
        if account.holders > 0:
            return
        delay = self.config.idle_disconnect
        account._idle_task = asyncio.get_running_loop().create_task(
            self._disconnect_when_idle(account, delay))

    async def _disconnect_when_idle(self, account: Account, delay: float) -> None:
        await asyncio.sleep(delay)
        if account.holders == 0 and self._accounts.get(account.api_key_id) is account:
            del self._accounts[account.api_key_id]
            await account.disconnect()
            log.debug("account of key #%d: disconnected after idle", account.api_key_id)

    async def forget(self, api_key_id: int) -> None:
        """Drop the account of a revoked key from memory right away (its connections close).

        Logging the authorization out at Telegram is the revocation sweep's job
        (:meth:`sweep_revoked`): it works from the stored session, so it reaches accounts
        that are idle-disconnected, or were revoked while the daemon was down, too.
        """
        account = self._accounts.pop(api_key_id, None)
        if account is None:
            return
        if account._idle_task is not None:
            account._idle_task.cancel()
        await account._drop_client()

    def sweep_revoked(self) -> asyncio.Task[None]:
        """Start (or join) a sweep that logs out the sessions of revoked keys; its task.

        Called by the revocation watcher every few seconds, so it also runs soon after start.
        A sweep never blocks the caller: Telegram may take up to REVOKE_LOGOUT_DEADLINE.
        """
        if self._sweep is None or self._sweep.done():
            self._sweep = asyncio.get_running_loop().create_task(self._sweep_revoked())
        return self._sweep

    async def _sweep_revoked(self) -> None:
        now = asyncio.get_running_loop().time()
        for key_id in await self.store.sessions_to_log_out():
            if self._logout_retry_at.get(key_id, 0.0) > now:
                continue
            await self.forget(key_id)
            if await self._log_out_revoked(key_id):
                self._logout_retry_at.pop(key_id, None)
            else:
                self._logout_retry_at[key_id] = now + REVOKE_LOGOUT_RETRY

    async def _log_out_revoked(self, key_id: int) -> bool:
        """auth.LogOut with the revoked key's stored session, then delete it.

        The session is deleted only once Telegram has ended the authorization (or says it
        was already gone): until then it stays, so a later sweep can try again. Returns
        whether the session is gone.
        """
        try:
            saved = await self.store.load_session(key_id, revoked=True)
        except SessionUnreadable as err:
            log.error("revoked key #%d: cannot log out at Telegram: %s", key_id, err)
            return False
        if saved is None:
            return True
        client = self.factory(StringSession(saved))
        try:
            async with asyncio.timeout(REVOKE_LOGOUT_DEADLINE):
                await client.connect()
                await client(functions.auth.LogOutRequest())
        except errors.UnauthorizedError:
            pass  # Telegram no longer knows the authorization: nothing left to end
        except (errors.RPCError, *resilience.TRANSIENT) as err:
            log.warning("revoked key #%d: log out at Telegram failed (%s); retrying in %d s",
                        key_id, type(err).__name__, REVOKE_LOGOUT_RETRY)
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
        await self.store.delete_session(key_id)
        log.info("revoked key #%d: logged out at Telegram; session deleted", key_id)
        return True

    @property
    def connected_accounts(self) -> int:
        return len(self._accounts)

    @property
    def stuck_accounts(self) -> int:
        """Accounts with a call pending past its deadline, or whose last call could not
        reach Telegram (nothing has succeeded since): /healthz reports them."""
        now = time.monotonic()
        return sum(1 for account in self._accounts.values() if account.pending.stuck(now))

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            await asyncio.gather(self._sweep, return_exceptions=True)
        accounts = list(self._accounts.values())
        self._accounts.clear()
        for account in accounts:
            if account._idle_task is not None:
                account._idle_task.cancel()
        await asyncio.gather(*(a.disconnect() for a in accounts), return_exceptions=True)
