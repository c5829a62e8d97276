"""Ground truth: what changed in the world, when, and what a stream should have delivered.

Every change to a chat's content or membership is appended to `world.churn_log` as a `Churn`
record: messages posted, deleted and edited, members who joined, left, were kicked or banned.
Each record carries the world-wide sequence number, the date Telegram shows for it, and how many
history / participant pages of that chat the sandbox had served when it happened. So a test can
say "after page 3 of the stream, ids 40..45 went away" and check what its client received.

"Should have been delivered" is defined against a mark taken when a stream starts
(`mark = world.mark()`), evaluated when it ends:
- `must`: what existed at the mark and still exists now, with no churn between (messages: ids
  present now and not posted since the mark; members: present now, with no join/leave/kick/ban
  since the mark). A correct stream delivers every one of them, exactly once, in order.
- `may`: what changed since the mark (messages posted or deleted; members who joined or left,
  including those who left and came back). A stream may deliver these or not, but at most once.
- nothing else: a message deleted before the mark, or a member gone before it, is never sent.
Edits change content, not presence: an edited message is in `must` and may arrive in either
version; `chat.truth_messages()` has the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tgws.sandbox.chats import SandboxChat

# Kinds of churn: content, then membership (leave/kick/ban all end a membership).
CONTENT = ("post", "delete", "edit")
MEMBERSHIP = ("join", "leave", "kick", "ban")
DEPARTURES = ("leave", "kick", "ban")


@dataclass(frozen=True, slots=True)
class Churn:
    seq: int  # index in world.churn_log
    kind: str  # one of CONTENT or MEMBERSHIP
    chat_id: int
    date: int  # the date Telegram shows (join date, edit date), else the world clock
    history_pages: int  # the chat's history pages served when it happened
    member_pages: int  # the chat's participant pages served when it happened
    msg_ids: tuple[int, ...] = ()  # post/delete/edit
    user_id: int | None = None  # join/leave/kick/ban
    text: str | None = None  # edit: the new text


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a stream over one chat, started at a mark and finished now, should deliver."""

    must: tuple[int, ...]  # message ids ascending / member user ids newest join first
    may: frozenset[int]

    def check(self, delivered: list[int], *, ordered_key: str = "ascending") -> list[str]:
        """Problems with `delivered` (empty when correct): missing, duplicated, unexpected,
        out of order. `ordered_key`: "ascending" (ids), "descending", or "none"."""
        problems: list[str] = []
        seen: set[int] = set()
        allowed = set(self.must) | self.may
        for item in delivered:
            if item in seen:
                problems.append(f"duplicate {item}")
            elif item not in allowed:
                problems.append(f"unexpected {item}")
            seen.add(item)
        missing = [item for item in self.must if item not in seen]
        if missing:
            problems.append(f"missing {missing[:20]}{'...' if len(missing) > 20 else ''}")
        if ordered_key != "none":
            want = sorted(delivered, reverse=ordered_key == "descending")
            if delivered != want:
                problems.append("out of order")
        return problems


def record(chat: SandboxChat, kind: str, date: int, *, msg_ids: tuple[int, ...] = (),
           user_id: int | None = None, text: str | None = None) -> Churn:
    log = chat.world.churn_log
    churn = Churn(len(log), kind, chat.id, date, chat.history_pages_served,
                  chat.member_pages_served, msg_ids, user_id, text)
    log.append(churn)
    return churn


def churn_since(chat: SandboxChat, mark: int) -> list[Churn]:
    return [c for c in chat.world.churn_log[mark:] if c.chat_id == chat.id]


def expected_messages(chat: SandboxChat, mark: int, *, after_id: int = 0) -> Expectation:
    """`after_id`: only ids above it (a `latest` stream resuming after its offset)."""
    posted: set[int] = set()
    changed: set[int] = set()
    for churn in churn_since(chat, mark):
        if churn.kind == "post":
            posted.update(churn.msg_ids)
            changed.update(churn.msg_ids)
        elif churn.kind == "delete":
            changed.update(churn.msg_ids)
    must = tuple(i for i in chat.truth_ids() if i > after_id and i not in posted)
    return Expectation(must, frozenset(i for i in changed if i > after_id))


def expected_members(chat: SandboxChat, mark: int, *, joined_after: int | None = None
                     ) -> Expectation:
    """`joined_after`: only members whose join date is later (a `latest` listing). A member who
    churned since the mark is in `may` whatever its date."""
    churned = {c.user_id for c in churn_since(chat, mark)
               if c.kind in MEMBERSHIP and c.user_id is not None}
    members = chat.members_newest_first()
    must = tuple(m.user.id for m in members if m.user.id not in churned
                 and (joined_after is None or m.date > joined_after))
    return Expectation(must, frozenset(churned))
