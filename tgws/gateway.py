"""The boundary to Telegram: Gateway (the accounts of this process) and Account.

Every Telethon call tgws makes is in this module or in the method groups Account is built
from, as Telethon's TelegramClient is built from its *Methods classes: account_calls.py
(the client, deadlines, flood waits), account_login.py (code, 2FA, log out) and peers.py
(names to peers); streaming pages are here. Every Telethon/RPC exception is translated into
tgws.errors.GatewayError at this boundary, so the rest of the daemon never imports Telethon.
Two more neighbours serve it and nothing else: telegram_clients.py builds the clients
(options, connection mode, the operator's RSA key) and rpc_errors.py groups Telegram's RPC
errors.

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

from tgws import history_paging, member_paging, resilience
from tgws.account_calls import OnFlood
from tgws.account_login import LoginMethods
from tgws.config import TelegramConfig
from tgws.errors import MembersHidden, NotAGroup, StoreError, TelegramUnavailable
from tgws.ownership_guard import AccountMoved, OwnershipGuard
from tgws.peers import Peer, ResolveMethods
from tgws.rpc_errors import FLOOD_ERRORS, translate
from tgws.store import SessionUnreadable, Store
from tgws.telegram_clients import ClientFactory

log = logging.getLogger("tgws.gateway")

ItemT = TypeVar("ItemT")
OnRetry = Callable[[float], Awaitable[None]]  # told the pause before a stream's next attempt

PAGE_MESSAGES = 100  # Telegram's page size for messages.getHistory
PAGE_MEMBERS = 200  # Telegram's page size for channels.getParticipants
REVOKE_LOGOUT_DEADLINE = 30.0  # seconds for connect + auth.LogOut of a revoked key's session
REVOKE_LOGOUT_RETRY = 60  # seconds before a failed revocation log-out is tried again
MEMBER_CAP = 10_000  # plain paging lists at most about this many members
SWEEP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(slots=True)
class Page(Generic[ItemT]):
    """One batch of a stream: Telethon Messages, or Users with `.participant` set."""

    items: list[ItemT]
    total: int | None  # Telegram's count of the whole listing, when it gave one


# --- accounts ------------------------------------------------------------------------------
class Account(LoginMethods, ResolveMethods):
    """The Telegram account behind one API key: one TelegramClient, shared by its connections.

    Calls and the client live in AccountCalls (account_calls.py), login in LoginMethods
    (account_login.py), resolving in ResolveMethods (peers.py); streaming is here.
    """

    # -- streaming ------------------------------------------------------------------------
    async def message_pages(self, peer: Peer, *, after_id: int, batch: int = PAGE_MESSAGES,
                            on_flood: OnFlood | None = None,
                            on_retry: OnRetry | None = None) -> AsyncIterator[Page[Any]]:
        """Messages with id > after_id, oldest first, in batches of `batch`.

        tgws's own pager (tgws/history_paging.py) sends the getHistory calls Telethon's
        iter_messages(reverse=True, min_id=after_id) would, and hands out the messages as
        parsed, without Telethon's per-message _finish_init (nothing tgws reads). Groups and
        channels only. No pacing between pages: Telegram's flood waits are the only one.
        """

        def iterate(client: Any) -> Any:
            return history_paging.HistoryPager(client, peer.input_peer(), after_id)

        async for page in self._batches(iterate, batch, on_flood, on_retry):
            yield page


    async def member_total(self, peer: Peer, on_flood: OnFlood | None = None) -> int | None:
        """Telegram's participant count; raises MembersHidden when we may not list them."""
        if peer.kind == "chat":
            return None
        full = await self._full_channel(peer, on_flood)
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
        """Pages of `size` items from the iterator `iterate(client)` returns: tgws's pagers
        (history_paging, member_paging) or Telethon's RequestIter, which resume alike.

        Flood waits are waited out in place. A transient failure (a 5xx after Telethon's
        retries, a dropped connection, no answer within call_timeout) is retried after a
        backoff, stream_retries times in a row, then raised as TelegramUnavailable.

        Resuming is exact: an error inside the iterator's __anext__ (Telegram's answer, or
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
        take: Callable[[list[Any], int], None] | None = None
        reconnect = False
        generation = self._generation
        items: list[Any] = []
        while True:
            # The hot loop (once per page with take_loaded, else per item): errors inline.
            try:
                if iterator is None or reconnect:
                    client = await self._ensure_client()
                    generation, reconnect = self._generation, False
                    if iterator is None:
                        iterator = iterate(client)
                        take = _page_taker(iterator)
                with self.pending.call(limit):
                    async with asyncio.timeout(limit):
                        item = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except FLOOD_ERRORS as err:
                await self._flood_wait(int(err.seconds), on_flood)
                continue
            except resilience.TRANSIENT as err:  # before RPCError: 5xx are RPCErrors too
                failure = await self._unavailable(err, generation)
            except AccountMoved:  # the lease is not (or no longer) ours: never retried
                raise
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
                raise translate(err) from None
            else:
                if not started:
                    started = True
                    self.pending.ok()
                backoff.succeeded()
                items.append(item)
                if take is not None:
                    take(items, size)
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


def _page_taker(iterator: Any) -> Callable[[list[Any], int], None] | None:
    """How to take the rest of the page `iterator` has loaded in one go, if it can.

    One __anext__ (and one deadline) per page instead of per item: tgws's own pagers
    (history_paging, member_paging) say how with take_loaded(). Telethon's iterators go
    item by item: only a basic group's members still use one (iter_participants, at most
    a few hundred from one messages.getFullChat).
    """
    own: Callable[[list[Any], int], None] | None = getattr(iterator, "take_loaded", None)
    return own


class Gateway:
    """All Telegram accounts of this process, one per API key."""

    def __init__(self, config: TelegramConfig, store: Store, factory: ClientFactory) -> None:
        self.config = config
        self.store = store
        self.factory = factory
        self._accounts: dict[int, Account] = {}
        self._sweep: asyncio.Task[None] | None = None
        self._logout_retry_at: dict[int, float] = {}  # revoked key id -> loop time
        # PostgreSQL with several daemons: the leases (set by the daemon); None = sqlite.
        self.guard: OwnershipGuard | None = None

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
            await self._release_lease(account.api_key_id)
            log.debug("account of key #%d: disconnected after idle", account.api_key_id)

    async def _release_lease(self, api_key_id: int) -> None:
        """The account's client is gone: another daemon may take it without waiting."""
        if self.guard is not None and api_key_id not in self._accounts:
            with contextlib.suppress(StoreError):  # it expires by itself all the same
                await self.guard.release(api_key_id)

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
            if self.guard is not None:  # the session is used under its lease, here too
                await self.guard.hold(key_id)
                self.guard.guard_client(client, key_id)
            async with asyncio.timeout(REVOKE_LOGOUT_DEADLINE):
                await client.connect()
                await client(functions.auth.LogOutRequest())
        except errors.UnauthorizedError:
            pass  # Telegram no longer knows the authorization: nothing left to end
        except (errors.RPCError, AccountMoved, StoreError, *resilience.TRANSIENT) as err:
            log.warning("revoked key #%d: log out at Telegram failed (%s); retrying in %d s",
                        key_id, type(err).__name__, REVOKE_LOGOUT_RETRY)
            return False
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
            await self._release_lease(key_id)
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
