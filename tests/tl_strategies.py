"""Hypothesis strategies for TL values, shared by the tests of tgws's TL readers
(tests/test_participants_reader.py, tests/test_history_reader.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
