"""One account's Telegram updates, fanned out to the watches of its connections (tgws/live.py).

The account's client calls one handler per update (tgws/account_updates.py switches the
client's updates on for the first watch and off after the last); each watch gets the changes
of the groups it watches, and the gaps Telethon reports (channelDifferenceTooLong, a
reconnect).
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from tgws import account_updates
from tgws.gateway import Account


class Follower(Protocol):
    """What a Feed needs of a watch."""

    def offer(self, change: account_updates.Change) -> None: ...

    def gap(self, chat: int | None) -> None: ...


class Feed:
    """One account's Telegram updates, handed to every watch of that account."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.watches: set[Follower] = set()

    async def on_update(self, update: Any) -> None:
        change = account_updates.read(update)
        if change is None:
            return
        for watcher in self.watches:
            watcher.offer(change)

    async def join(self, watcher: Follower) -> None:
        self.watches.add(watcher)
        await self.follow()

    async def follow(self) -> None:
        await account_updates.follow(self.account, self.on_update, self.on_gap)

    def on_gap(self, chat: int | None) -> None:
        """Telethon skipped a gap in `chat` (channelDifferenceTooLong), or in every chat
        (None: it reconnected, and what was pushed meanwhile is lost to it)."""
        for watcher in self.watches:
            watcher.gap(chat)

    def leave(self, watcher: Follower) -> None:
        self.watches.discard(watcher)
        if not self.watches:
            account_updates.unfollow(self.account, self.on_update)
            _feeds.pop(self.account, None)


_feeds: weakref.WeakKeyDictionary[Account, Feed] = weakref.WeakKeyDictionary()


def feed_of(account: Account) -> Feed:
    feed = _feeds.get(account)
    if feed is None:
        feed = _feeds[account] = Feed(account)
    return feed
