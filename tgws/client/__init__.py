"""`tgws client`: the reference command-line client of the tgws websocket protocol.

It speaks only the wire protocol (docs/protocol.md), so it works against any tgws server,
and every request it sends is one a third-party client could send. `--transcript` shows
the frames both ways, which is how the sample session in docs/protocol.md was made.

Design notes:

* One JSON line per item on stdout, everything else on stderr, so `| jq` and `> file`
  just work. stdout is written in 64 KiB chunks (plus a flush every 0.2 s, so a slow live
  stream still shows up promptly): a million-line stream costs a million small appends,
  not a million syscalls.
* The hot loop (one iteration per streamed item) receives bytes (`recv(decode=False)`), so
  orjson parses the UTF-8 payload directly, and it does no per-item work beyond parse,
  pick the inner object, dump.
* Keepalive pings from this side are off: while stdout is blocked (`| less` paused), the
  pong would queue behind unread data frames and websockets would drop a healthy
  connection after ping_timeout. The server pings us; a dead server shows as a closed TCP
  connection (exit 3).
* Terminal input (phone, code, password) is read in a daemon thread, so the event loop
  keeps answering the server's pings while a person types, and Ctrl-C is not held up by
  a thread blocked in readline() (asyncio.to_thread's executor is joined at exit).

Modules: arguments (the command line, its help and exit codes), session (one websocket
conversation: frames, replies, errors), output (stdout lines, stderr status), actions
(login, stream, telegram login), program (run: connect, act, exit code).
"""

from __future__ import annotations

from tgws.client.arguments import add_arguments
from tgws.client.program import run

__all__ = ["add_arguments", "run"]
