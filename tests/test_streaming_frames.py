"""Hand-built text frames are byte-identical to what websockets itself would send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from tgws.fastpath import text_frame


def websockets_frame(payload: bytes) -> bytes:
    # A server's frames are unmasked; no extensions (the hand-built path is only used then).
    return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_every_length_encoding_matches_websockets(size: int) -> None:
    payload = b"x" * size
    assert text_frame(payload) == websockets_frame(payload)


@given(st.text().map(str.encode))
def test_any_utf8_payload_matches_websockets(payload: bytes) -> None:
    assert text_frame(payload) == websockets_frame(payload)
