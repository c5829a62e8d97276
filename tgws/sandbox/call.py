"""The context one RPC call is answered in: who asks, with which key, in which mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tgws.sandbox.users import SandboxUser
    from tgws.sandbox.world import World


@dataclass(slots=True)
class Call:
    world: World
    key: bytes  # the client's auth key bytes as sent (b"" if it has none)
    user: SandboxUser | None  # who that key is logged in as
    wire: bool  # answer with serialized bytes where a handler can splice them
    new_key: bytes | None = None  # set by a successful login: the sender installs it
    dc: int = 2  # the data centre the client's connection reaches (dcs.py)


# A handler answers one (unwrapped) request: a TL object, a list (a TL Vector), or, in wire mode
# only, pre-serialized bytes.
Handler = Callable[[Call, Any], Any]
