"""A history of any length whose message N is computed on demand, never stored.

Message N of a lazy history is a pure function of (world seed, chat, N): a splitmix64 hash of
the chat's salt and N picks its shape (text, reply, photo, document, forward), its text from a
fixed pool, its author from a frozen author list, and so on; its date is arithmetic in N. So a
million-message history costs nothing until a page is asked for, and any page costs the same.

Wire mode must be cheap per message, because benchmarks stream a million of these through
Telethon and compare against Telethon alone: serializing a `Message` with `bytes()` costs about
8 µs. Instead, each (shape, text) pair is serialized once as a *template* with sentinel values in
the fields that vary (id, date, author, reply target, ...), the sentinels' offsets are recorded,
and message N's bytes are one `struct.pack` of the constant chunks and N's values. A template is
only accepted after a second build with different sentinels renders byte-identically, so a field
that would not patch cleanly fails loudly instead of producing wrong bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telethon.tl import types

from tgws.sandbox.derive import mix64, when
from tgws.sandbox.media import build_media

# slot name -> struct code; int32 for ids/dates/counters, int64 for user ids.
_SLOTS: dict[str, str] = {
    "id": "i", "date": "i", "from_id": "q", "reply_id": "i", "fwd_date": "i", "fwd_from": "q",
    "views": "i", "forwards": "i",
}
_SENTINELS_A = {
    "id": 0x3A5B7C11, "date": 0x3A5B7C12, "from_id": 0x1A2B3C4D5E6F7013, "reply_id": 0x3A5B7C14,
    "fwd_date": 0x3A5B7C15, "fwd_from": 0x1A2B3C4D5E6F7016, "views": 0x3A5B7C17,
    "forwards": 0x3A5B7C18,
}
_SENTINELS_B = {
    "id": 0x2C1D0E21, "date": 0x2C1D0E22, "from_id": 0x0B1C2D3E4F506123, "reply_id": 0x2C1D0E24,
    "fwd_date": 0x2C1D0E25, "fwd_from": 0x0B1C2D3E4F506126, "views": 0x2C1D0E27,
    "forwards": 0x2C1D0E28,
}

_WORDS = (
    "the", "meeting", "moved", "to", "thursday", "see", "attached", "photo", "anyone", "know",
    "why", "build", "fails", "thanks", "great", "idea", "release", "notes", "tonight", "coffee",
    "server", "is", "back", "up", "please", "review", "my", "pull", "request", "lunch",
    "привет", "всем", "日本語", "テスト", "café", "naïve", "🙂", "🚀", "ok", "lol",
)
# Fixed pool of texts: lengths from a few words to a long paragraph, some non-ASCII.
TEXTS: tuple[str, ...] = tuple(
    " ".join(_WORDS[(i * 7 + j * 13) % len(_WORDS)] for j in range(2 + (i * 5) % 37)).capitalize()
    for i in range(48)
)


@dataclass(frozen=True, slots=True)
class _Template:
    packer: struct.Struct
    chunks: tuple[bytes, ...]
    slots: tuple[str, ...]  # slots[i] comes after chunks[i]

    def render(self, values: Mapping[str, int]) -> bytes:
        args: list[bytes | int] = []
        for chunk, slot in zip(self.chunks, self.slots, strict=False):
            args.append(chunk)
            args.append(values[slot])
        args.append(self.chunks[-1])
        return self.packer.pack(*args)


def _make_template(build: Any, used: Sequence[str]) -> _Template:
    """Find the sentinel slots in build(A) and prove the template with build(B)."""
    data = bytes(build(_SENTINELS_A))
    found: list[tuple[int, str]] = []
    for slot in used:
        pattern = struct.pack("<" + _SLOTS[slot], _SENTINELS_A[slot])
        start = data.find(pattern)
        if start < 0:
            raise AssertionError(f"lazy template: slot {slot} not found")
        while start >= 0:
            found.append((start, slot))
            start = data.find(pattern, start + 1)
    found.sort()
    chunks: list[bytes] = []
    slots: list[str] = []
    fmt = "<"
    pos = 0
    for start, slot in found:
        if start < pos:
            raise AssertionError("lazy template: overlapping slots")
        chunks.append(data[pos:start])
        slots.append(slot)
        fmt += f"{start - pos}s{_SLOTS[slot]}"
        pos = start + struct.calcsize("<" + _SLOTS[slot])
    chunks.append(data[pos:])
    fmt += f"{len(data) - pos}s"
    template = _Template(struct.Struct(fmt), tuple(chunks), tuple(slots))
    if template.render(_SENTINELS_B) != bytes(build(_SENTINELS_B)):
        raise AssertionError("lazy template: a varying field is not covered by a slot")
    return template


class LazyHistory:
    """Messages 1..count of one channel or megagroup, computed from their id."""

    def __init__(self, *, chat_id: int, broadcast: bool, count: int, first_date: int,
                 interval: int, authors: Sequence[int], salt: int) -> None:
        if count < 0 or interval < 0:
            raise ValueError("lazy history needs count >= 0 and interval >= 0")
        if not broadcast and not authors:
            raise ValueError("a megagroup's lazy history needs authors (add members first)")
        self.chat_id = chat_id
        self.broadcast = broadcast
        self.count = count
        self.first_date = first_date
        self.interval = interval
        self.authors = tuple(authors)
        self.salt = salt
        self._templates: dict[tuple[str, int], _Template] = {}

    def date(self, n: int) -> int:
        return self.first_date + (n - 1) * self.interval

    def text_index(self, n: int) -> int:
        return (mix64(self.salt + n) >> 8) % len(TEXTS)

    def spec(self, n: int) -> tuple[str, int, dict[str, int]]:
        """(shape, text index, field values) of message n."""
        return self._spec(n)

    def _spec(self, n: int) -> tuple[str, int, dict[str, int]]:
        h = mix64(self.salt + n)
        r = h & 0xFF
        if self.broadcast:
            shape = "text" if r < 200 else "photo" if r < 230 else "document"
        else:
            shape = ("text" if r < 179 or (r < 217 and n == 1) else "reply" if r < 217
                     else "photo" if r < 235 else "document" if r < 248 else "forward")
        date = self.first_date + (n - 1) * self.interval
        values = {"id": n, "date": date}
        if self.broadcast:
            values["views"] = 50 + (h >> 20) % 20_000
            values["forwards"] = (h >> 40) % 100
        else:
            values["from_id"] = self.authors[(h >> 16) % len(self.authors)]
            if shape == "reply":
                values["reply_id"] = n - 1 - (h >> 28) % min(n - 1, 40)
            elif shape == "forward":
                values["fwd_from"] = self.authors[(h >> 36) % len(self.authors)]
                values["fwd_date"] = date - 600 - (h >> 44) % 86_400
        return shape, (h >> 8) % len(TEXTS), values

    def _build(self, shape: str, text_index: int, v: Mapping[str, int]) -> Any:
        kw: dict[str, Any] = {
            "id": v["id"], "peer_id": types.PeerChannel(channel_id=self.chat_id),
            "date": when(v["date"]), "message": TEXTS[text_index],
        }
        if self.broadcast:
            kw.update(post=True, views=v["views"], forwards=v["forwards"])
        else:
            kw["from_id"] = types.PeerUser(user_id=v["from_id"])
        if shape == "reply":
            kw["reply_to"] = types.MessageReplyHeader(reply_to_msg_id=v["reply_id"])
        elif shape == "forward":
            kw["fwd_from"] = types.MessageFwdHeader(
                date=when(v["fwd_date"]), from_id=types.PeerUser(user_id=v["fwd_from"]))
        elif shape in ("photo", "document"):
            # The media's ids depend on the template only (a reposted picture), so that only
            # the date slot varies inside it.
            kw["media"] = build_media(shape, self.salt + text_index, v["date"])
        return types.Message(**kw)

    def tl(self, n: int) -> Any:
        shape, text_index, values = self._spec(n)
        return self._build(shape, text_index, values)

    def wire(self, n: int) -> bytes:
        shape, text_index, values = self._spec(n)
        template = self._templates.get((shape, text_index))
        if template is None:
            template = _make_template(
                lambda v: self._build(shape, text_index, v), tuple(values))
            self._templates[shape, text_index] = template
        return template.render(values)

    def user_ids(self, n: int) -> tuple[int, ...]:
        if self.broadcast:
            return ()
        values = self._spec(n)[2]
        fwd = values.get("fwd_from")
        return (values["from_id"],) if fwd is None else (values["from_id"], fwd)
