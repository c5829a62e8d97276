"""Page hooks: change a chat's world between two pages the sandbox serves for it.

The sandbox counts the messages.getHistory and channels.getParticipants pages it answers per
chat and, after each, runs that kind's hooks before the next request is answered. That is how a
test (or the hostile world) deletes, edits, or churns members in the middle of a stream, at a
point it can name: "after page 2".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat
    from tgws.sandbox.users import SandboxUser


@dataclass(frozen=True, slots=True)
class Served:
    """One page the sandbox served for a chat, as page hooks see it."""

    kind: str  # "history" or "members"
    number: int  # 1 for the chat's first page of this kind
    offset: int  # participants: the request's offset; history: the page's start position
    ids: tuple[int, ...]  # message ids, or member user ids, in the order served


PageHook = Callable[["SandboxChat", Served], None]


class PageHooks:
    """Mixed into SandboxChat: page counters and hooks."""

    history_pages_served: int
    member_pages_served: int
    _history_hooks: list[PageHook]
    _member_hooks: list[PageHook]

    def _init_hooks(self) -> None:
        self.history_pages_served = 0
        self.member_pages_served = 0
        self._history_hooks = []
        self._member_hooks = []

    def on_history_page(self, hook: PageHook) -> None:
        """Run hook(chat, served) after every messages.getHistory page served for this chat."""
        self._history_hooks.append(hook)

    def on_member_page(self, hook: PageHook) -> None:
        """Run hook(chat, served) after every channels.getParticipants page of this chat."""
        self._member_hooks.append(hook)

    def after_history_pages(self, pages: int, *, delete: Iterable[int] = (),
                            edit: dict[int, str] | None = None) -> None:
        """Once `pages` history pages have been served: delete ids, then edit others."""
        doomed, edits = tuple(delete), dict(edit or {})

        def hook(chat: SandboxChat, served: Served) -> None:
            if served.number == pages:
                chat.delete(*doomed)
                for msg_id, text in edits.items():
                    chat.edit(msg_id, text)
        self.on_history_page(hook)

    def after_member_pages(self, pages: int, *, leave: Iterable[SandboxUser] = (),
                           how: str = "left", join: Iterable[SandboxUser] = ()) -> None:
        """Once `pages` participant pages have been served: members leave, then others join
        (dated now, so they list first)."""
        gone, new = tuple(leave), tuple(join)

        def hook(chat: SandboxChat, served: Served) -> None:
            if served.number == pages:
                for user in gone:
                    chat.leave(user, how=how)
                for user in new:
                    newest = chat._order[-1].date if chat._order else chat.date
                    chat.join(user, date=max(chat.world.now(), newest + 1))
        self.on_member_page(hook)

    def served(self, kind: str, offset: int, ids: Sequence[int]) -> None:
        """Count a page the sandbox answered for this chat and run that kind's hooks."""
        if kind == "history":
            self.history_pages_served += 1
            number, hooks = self.history_pages_served, self._history_hooks
        else:
            self.member_pages_served += 1
            number, hooks = self.member_pages_served, self._member_hooks
        if hooks:
            info = Served(kind, number, offset, tuple(ids))
            chat = cast("SandboxChat", self)  # only SandboxChat mixes this in
            for hook in list(hooks):
                hook(chat, info)

