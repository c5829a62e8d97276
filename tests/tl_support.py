"""What the tests of tgws's TL readers share (tests/test_participants_reader.py,
tests/test_history_reader.py): hypothesis strategies for TL values, and reading one buffer
the two ways to compare them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from telethon.extensions import BinaryReader
from telethon.tl.tlobject import TLObject

INT32 = st.integers(-(2**31), 2**31 - 1)
IDS = st.integers(-(2**63), 2**63 - 1)
# Telethon serializes an int date as it is: the edges (0, negative, the last second of
# int32) come up often, other seconds too.
DATES = st.sampled_from([0, -1, -(2**31), 2**31 - 1, 1_700_000_000]) | INT32
CHARS = st.characters(exclude_categories=["Cs"])  # TL strings are UTF-8: no lone surrogates


def exactly(text: str, size: int) -> str:
    """A str whose UTF-8 is exactly `size` bytes: text's leading characters, then 'x's."""
    out: list[str] = []
    used = 0
    for ch in text:
        n = len(ch.encode())
        if used + n > size:
            break
        out.append(ch)
        used += n
    return "".join(out) + "x" * (size - used)


# 253 is the longest one-byte length; from 254 on, TL writes 254 and three length bytes.
STRINGS = (st.text(CHARS, max_size=16)
           | st.sampled_from(["", "Ann", "名前", "👨\u200d💻", "\U0001f600\U00010348", "\x00"])
           | st.builds(exactly, st.text(CHARS, max_size=80),
                       st.sampled_from([1, 2, 3, 4, 252, 253, 254, 255, 256, 257, 299])))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def read_with(read: Callable[[BinaryReader], Any], data: bytes,
              start: int) -> tuple[bool, Any, int]:
    """(read?, the object or the exception's type, the position after it)."""
    reader = BinaryReader(data)
    reader.set_position(start)
    try:
        obj = read(reader)
    except Exception as exc:  # which one is the point of the comparison
        return False, type(exc), -1
    return True, obj, reader.tell_position()


def shape(obj: Any) -> Any:
    """The types of obj and of everything in it (attributes in order, private ones
    included), date zones too: a `1` where Telethon has `True` would pass `==`."""
    if isinstance(obj, TLObject):
        return type(obj), [(name, shape(value)) for name, value in vars(obj).items()]
    if isinstance(obj, list):
        return list, [shape(item) for item in obj]
    if isinstance(obj, datetime):
        return datetime, obj.tzinfo
    return type(obj)
