"""One account's Telegram updates, fanned out to the watches of its connections (tgws/live.py).

The account's client calls one handler per update (tgws/account_updates.py switches the
client's updates on for the first watch and off after the last); each watch gets the changes
of the groups it watches, and the gaps Telethon reports (channelDifferenceTooLong, a
reconnect). Watches are indexed by chat, so an update costs the watches of its chat, not
every watch of the account (one account watching 10,000 groups has 100 watches).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, Protocol

from tgws import account_updates
from tgws.gateway import Account


class Follower(Protocol):
    """What a Feed needs of a watch."""

    def offer(self, change: account_updates.Change) -> None: ...

    def gap(self, chat: int | None) -> None: ...


class Feed:
    """One account's Telegram updates, handed to the watches of the chat each is about."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.watches: dict[Follower, tuple[int, ...]] = {}  # watch -> its chat keys
        self.by_chat: dict[int, list[Follower]] = {}

    async def on_update(self, update: Any) -> None:
        change = account_updates.read(update)
        if change is None:
            return
        for watcher in self.by_chat.get(change.chat, ()):
            watcher.offer(change)

    async def join(self, watcher: Follower, chats: Iterable[int]) -> None:
        """`watcher` gets the changes of `chats` (chat keys) from now on."""
        keys = tuple(chats)
        self.watches[watcher] = keys
        for key in keys:
            self.by_chat.setdefault(key, []).append(watcher)
        await self.follow()

    async def follow(self) -> None:
        await account_updates.follow(self.account, self.on_update, self.on_gap)

    def on_gap(self, chat: int | None) -> None:
        """Telethon skipped a gap in `chat` (channelDifferenceTooLong), or in every chat
        (None: it reconnected, and what was pushed meanwhile is lost to it)."""
        watchers = list(self.watches) if chat is None else self.by_chat.get(chat, ())
        for watcher in watchers:
            watcher.gap(chat)

    def leave(self, watcher: Follower) -> None:
        for key in self.watches.pop(watcher, ()):
            others = self.by_chat.get(key)
            if others is not None and watcher in others:
                others.remove(watcher)
                if not others:
                    del self.by_chat[key]
        if not self.watches:
            account_updates.unfollow(self.account, self.on_update)
            _feeds.pop(self.account, None)


_feeds: weakref.WeakKeyDictionary[Account, Feed] = weakref.WeakKeyDictionary()


def feed_of(account: Account) -> Feed:
    feed = _feeds.get(account)
    if feed is None:
        feed = _feeds[account] = Feed(account)
    return feed
