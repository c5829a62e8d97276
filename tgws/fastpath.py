"""The one module that relies on library internals: each checked, a public twin where one exists.

Issue 12 asks for every use of a library internal in one module, so a websockets or
Telethon upgrade is checked against this file alone.

One hot loop (once per streamed item) goes below websockets' public API, because the
public path costs about a microsecond per item (bench/README.md): writing a batch of frames
(`write_frames`): `Connection.send_context()`, `conn.protocol` (`extensions`, `send_text()`,
`data_to_send()`) and `conn.transport`, to write a batch of hand-built frames with one
syscall. Public twin: `await ws.send(frame, text=True)` per frame, in tgws/frames.py. Also
`conn.transport.abort()` (`abort`), to drop a client that stopped reading; public twin:
ws.close(), which aborts in time. And the close frame's code as soon as it is received or
sent (`close_code_and_reason`, for the log; public twin: `close_code`, set only once TCP is
gone). A member page (channels.getParticipants) and a history page (messages.getHistory)
are read by tgws's own TL readers, tgws/participants_reader.py and tgws/history_reader.py,
attached as the request's `read_result` (`read_participants_fast`, `read_history_fast`;
public twin: Telethon's generated readers, which give the same objects at two to three
times the cost). (Streams no longer read Telethon's RequestIter internals:
tgws's own pagers, history_paging.py and member_paging.py, hand out whole pages.)

Telethon's update machinery is hooked here too, each hook with a fallback: the
`_no_updates` flag (`receives_updates`, `stop_updates`; public twin: set_receive_updates),
the sender's `_auto_reconnect_callback` (`report_reconnects`) and the client's
`_message_box` class (`report_too_long`); without them a watch notices gaps later (on
the next message or the periodic pass), never wrongly.

A few internals have no public twin and are checked once at start-up (`check_required`,
called by the daemon; a missing one stops tgws with a ConfigError naming it):
TelegramClient `_switch_dc` and `_on_login` (QR login on another DC), `_phone_code_hash`
(a new code rather than a resend), `_call` (per-method request metrics), Message
`_action_entities` (a service message's users for a watch: `give_action_entities`),
telethon.crypto.rsa `_compute_fingerprint` (a custom MTProto server's key), and the
asyncio.Protocol callbacks of websockets' ServerConnection that tgws/wsguard.py extends.

Nothing else in tgws is to touch those names. Each fast path is checked on first use (the
answer is cached and logged once): the attributes it uses must exist, and a self-test
must pass (hand-built frames byte-identical to websockets' own Frame serializer). When a
check fails, the public path is used and a warning names what was missing, so a websockets
or Telethon release that moves its internals makes tgws slower, never wrong.

`force_public(True)` is the documented switch that reports the internals as missing (for
the tests that prove the fallback streams correctly, and for benchmarks); `False` goes back
to checking.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection

log = logging.getLogger("tgws.fastpath")

_forced_public = False
_websockets_ok: dict[type[Any], bool] = {}


def force_public(enabled: bool) -> None:
    """Report every internal as missing (True), or check them again on next use (False)."""
    global _forced_public, _readers_ok, _held_pong_ok
    _forced_public = enabled
    _websockets_ok.clear()
    _readers_ok = None
    _held_pong_ok = None


# --- websockets: hand-built frames, one write per batch ---------------------------------------
def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame (RFC 6455 §5.2), as a server sends it.

    websockets builds a Frame object per message (~1 µs); with no extension negotiated the
    header is 2, 4 or 10 bytes we can write directly (~0.15 µs). Byte-identical output is
    checked against websockets' own serializer at first use and in
    tests/test_streaming_frames.py.
    """
    size = len(payload)
    if size < 126:
        return _HEADER_SMALL(0x81, size) + payload
    if size < 65536:
        return _HEADER_MEDIUM(0x81, 126, size) + payload
    return _HEADER_LARGE(0x81, 127, size) + payload


_HEADER_SMALL = struct.Struct("!BB").pack
_HEADER_MEDIUM = struct.Struct("!BBH").pack
_HEADER_LARGE = struct.Struct("!BBQ").pack


def can_write(ws: ServerConnection) -> bool:
    """Whether `write_frames` may be used on connections like `ws` (checked once per class)."""
    ok = _websockets_ok.get(type(ws))
    if ok is None:
        ok = _websockets_ok[type(ws)] = _check("websockets", lambda: _websockets_missing(ws))
    return ok


async def write_frames(ws: ServerConnection, frames: list[bytes]) -> None:
    """Write many text frames with one transport write, then drain (backpressure).

    send_context() checks the connection is open, and on exit writes what the protocol
    queued and waits in drain() while the buffer is above the write limit.
    """
    async with ws.send_context():
        protocol = ws.protocol
        if protocol.extensions:
            # permessage-deflate: the protocol object must compress each frame.
            for frame in frames:
                protocol.send_text(frame)
            data = b"".join(protocol.data_to_send())
        else:
            # Control frames the protocol queued (a pong, say) go first, in order.
            data = b"".join([*protocol.data_to_send(), *map(text_frame, frames)])
        ws.transport.write(data)


def abort(ws: ServerConnection) -> None:
    """Drop the connection at once, without a closing handshake.

    For a client that reads nothing (it could not take a close frame either) and for
    shutdown's last step. Without the transport, the public ws.close() is started in the
    background: best effort, since websockets drains the output before its close
    timeout starts, so against a client that never reads it may not finish.
    """
    transport = getattr(ws, "transport", None)
    if not _forced_public and callable(getattr(transport, "abort", None)):
        transport.abort()  # type: ignore[union-attr]
        return
    task = asyncio.get_running_loop().create_task(ws.close(1011, "aborted"))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak refs only


def close_code_and_reason(ws: ServerConnection) -> tuple[int | None, str]:
    """The close frame received (else the one sent), for the connection's last log line:
    the public `close_code` stays None until the TCP connection is gone, which is often
    after that line. Falls back to the public `close_code` / `close_reason`."""
    protocol = getattr(ws, "protocol", None)
    frame = getattr(protocol, "close_rcvd", None) or getattr(protocol, "close_sent", None)
    code, reason = getattr(frame, "code", None), getattr(frame, "reason", None)
    if isinstance(code, int) and isinstance(reason, str):
        return code, reason
    return ws.close_code, ws.close_reason or ""


def _websockets_missing(ws: ServerConnection) -> str | None:
    from websockets.frames import Frame, Opcode  # websockets' own serializer, as reference

    if not callable(getattr(type(ws), "send_context", None)):
        return "Connection.send_context()"
    protocol = getattr(ws, "protocol", None)
    for name in ("send_text", "data_to_send"):
        if not callable(getattr(protocol, name, None)):
            return f"Connection.protocol.{name}()"
    if not isinstance(getattr(protocol, "extensions", None), list):
        return "Connection.protocol.extensions"
    if not callable(getattr(getattr(ws, "transport", None), "write", None)):
        return "Connection.transport.write()"
    for size in (0, 125, 126, 65535, 65536):
        payload = b"x" * size
        if text_frame(payload) != Frame(Opcode.TEXT, payload).serialize(mask=False,
                                                                         extensions=[]):
            return f"a frame of {size} bytes equal to websockets' Frame.serialize()"
    return None


def _check(library: str, missing: Callable[[], str | None]) -> bool:
    if _forced_public:
        log.info("%s: public path (forced)", library)
        return False
    try:
        what = missing()
    except Exception as err:  # any failure of a self-test means: do not rely on internals
        what = f"self-test raised {type(err).__name__}: {err}"
    if what is not None:
        log.warning("%s: internals missing (%s): using the public path, which is slower",
                    library, what)
        return False
    log.info("%s: fast path in use", library)
    return True


# --- Telethon's update machinery: fenced hooks, each with a public (or no-op) fallback --------
def receives_updates(client: Any) -> bool:
    """Whether `client` asks Telegram for updates (Telethon's `_no_updates` flag is off).

    Without the flag, False: the caller then calls the public set_receive_updates(True),
    which costs one updates.getState more but is correct."""
    flag = getattr(client, "_no_updates", None)
    return flag is False and not _forced_public


def stop_updates(client: Any) -> None:
    """What set_receive_updates(False) does (a flag for the next requests), without awaiting.

    Without the flag, the public coroutine runs in the background."""
    if not _forced_public and isinstance(getattr(client, "_no_updates", None), bool):
        client._no_updates = True
        return
    task = asyncio.get_running_loop().create_task(client.set_receive_updates(False))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def report_reconnects(client: Any, on_gap: Callable[[int | None], None]) -> None:
    """Call `on_gap(None)` after each automatic reconnect of the client's sender.

    Telethon's MTProtoSender calls the client's _handle_auto_reconnect then, which only
    makes a request so Telegram resumes pushing: what was pushed while the connection was
    down is lost to handlers. The sender's `_auto_reconnect_callback` is wrapped. Fallback
    (no such callback): nothing is reported; the periodic pass notices instead."""
    sender: Any = getattr(client, "_sender", None)
    callback = getattr(sender, "_auto_reconnect_callback", None)
    if callback is None or _forced_public:
        return
    holder = getattr(callback, "tgws_reports_to", None)
    if holder is not None:
        holder[0] = on_gap  # already wrapped: the newest follower is told
        return
    reports_to: list[Callable[[int | None], None]] = [on_gap]

    async def reconnected() -> Any:
        reports_to[0](None)
        return await callback()

    reconnected.tgws_reports_to = reports_to  # type: ignore[attr-defined]
    sender._auto_reconnect_callback = reconnected


def report_too_long(client: Any, on_gap: Callable[[int | None], None]) -> None:
    """Tell `on_gap(chat_key)` about every channelDifferenceTooLong this client applies.

    Telethon jumps over such a gap, hands nothing of it to event handlers, and tells no one:
    until the chat's next message (or the periodic pass) a watch would not know. So the
    client's `_message_box` becomes a _ReportingBox, which adds only that report (MessageBox
    has __slots__: its method cannot be replaced on the instance, its class can). Fallback
    (no telethon._updates.MessageBox): the next message and the periodic pass notice."""
    box = getattr(client, "_message_box", None)
    if _ReportingBox is None or box is None or _forced_public:
        return
    if type(box) is _MessageBox:
        box.__class__ = _ReportingBox
    if type(box) is _ReportingBox:
        _GAP_REPORTS[id(box)] = on_gap


def forget_gap_reports(client: Any) -> None:
    """Stop reporting gaps for `client` (nobody follows it any more)."""
    _GAP_REPORTS.pop(id(getattr(client, "_message_box", None)), None)


_GAP_REPORTS: dict[int, Callable[[int | None], None]] = {}  # id(MessageBox) -> on_gap


def _reporting_box() -> tuple[Any, Any]:
    """(Telethon's MessageBox, its subclass that reports channelDifferenceTooLong), or Nones."""
    try:
        from telethon._updates import MessageBox
        from telethon.tl import types
    except ImportError:  # pragma: no cover - a Telethon that moved it
        return None, None
    if not callable(getattr(MessageBox, "apply_channel_difference", None)):
        return None, None  # pragma: no cover - a Telethon that renamed it

    class ReportingBox(MessageBox):  # type: ignore[misc]
        __slots__ = ()

        def apply_channel_difference(self, request: Any, diff: Any, chat_hashes: Any) -> Any:
            if isinstance(diff, types.updates.ChannelDifferenceTooLong):
                report = _GAP_REPORTS.get(id(self))
                if report is not None:
                    report(-(10**12 + int(request.channel.channel_id)))
            return super().apply_channel_difference(request, diff, chat_hashes)

    return MessageBox, ReportingBox


_MessageBox, _ReportingBox = _reporting_box()


# --- Telethon: member and history pages read by tgws's own TL readers --------------------------
def read_participants_fast(request: Any) -> Any:
    """`request` (a channels.GetParticipantsRequest), answered through
    tgws/participants_reader.py rather than Telethon's generated readers.

    Relies on Telethon's MTProtoSender reading an RPC result with
    `state.request.read_result(reader)` (read_result is a static method of every TLRequest,
    so an instance attribute takes its place) and on BinaryReader's public `get_bytes`,
    `tell_position` and `set_position`. A client that does not receive updates (every
    client of tgws but a watch's) sends each request inside an InvokeWithoutUpdatesRequest
    that Telethon builds in `_call`, and the sender asks *that* for read_result: so the
    wrapper class's read_result (TLRequest's `reader.tgread_object()`) is replaced, once,
    by one that asks the wrapped query's own read_result when the query carries one (only
    requests passed through here do) and reads as before otherwise. The reader gives the
    objects Telethon would build; when its layout check fails (another TL layer) it hands
    the page to Telethon's own reader. Fallback when Telethon stops calling read_result:
    its own parsing, slower and the same. `force_public(True)` leaves the request as it is."""
    if _telethon_readers_ok():  # False when forced public (and logged once)
        from tgws.participants_reader import read_result

        request.read_result = read_result
    return request


def read_history_fast(request: Any) -> Any:
    """`request` (a messages.GetHistoryRequest), answered through tgws/history_reader.py
    rather than Telethon's generated readers: as read_participants_fast, relying on the
    same internals, checked by the same check (one log line for both readers)."""
    if _telethon_readers_ok():
        from tgws.history_reader import read_result

        request.read_result = read_result
    return request


def _telethon_readers_ok() -> bool:
    global _readers_ok
    if _readers_ok is None:
        _readers_ok = _check("Telethon", _telethon_readers_missing)
        if _readers_ok:
            _delegate_wrapper_results()
    return _readers_ok


def _telethon_readers_missing() -> str | None:
    from telethon.extensions import BinaryReader
    from telethon.tl import functions
    from telethon.tl.tlobject import TLRequest

    from tgws import history_reader, participants_reader

    for module in (participants_reader, history_reader):
        if not module.LAYOUT_OK:
            return (f"the layout {module.__name__.rsplit('.', 1)[-1]}.py reads (the TL "
                    "layer's constructor ids, or the attributes Telethon's classes set)")
    for request in (functions.channels.GetParticipantsRequest,
                    functions.messages.GetHistoryRequest):
        if not callable(getattr(request, "read_result", None)):
            return "TLRequest.read_result"
    wrapper = functions.InvokeWithoutUpdatesRequest
    inherited = "read_result" not in wrapper.__dict__ and \
        wrapper.read_result is TLRequest.read_result
    if not inherited and wrapper.__dict__.get("read_result") is not _delegating_read_result:
        return "InvokeWithoutUpdatesRequest.read_result as TLRequest's"
    for name in ("get_bytes", "tell_position", "set_position"):
        if not callable(getattr(BinaryReader, name, None)):
            return f"BinaryReader.{name}()"
    return None


def _delegating_read_result(self: Any, reader: Any) -> Any:
    """InvokeWithoutUpdatesRequest.read_result: the query's own reader when tgws gave it one
    (read_participants_fast, read_history_fast), else TLRequest's."""
    own = getattr(self.query, "__dict__", {}).get("read_result")
    return reader.tgread_object() if own is None else own(reader)


def _delegate_wrapper_results() -> None:
    from telethon.tl import functions

    functions.InvokeWithoutUpdatesRequest.read_result = _delegating_read_result


_readers_ok: bool | None = None


# --- websockets: a client connection that leaves its pongs to the caller (forwarding) -----------
def held_pong_connection() -> type[Any] | None:
    """A websockets ClientConnection class that answers no ping by itself, or None.

    tgws/forwarding.py proxies a client to the daemon that owns its account. The owner's
    acknowledgements are pongs (tgws/acks.py): with websockets' automatic pong the proxy
    would confirm items the moment it read them, before the client had them, and a client
    dropping then would lose items the owner committed. With this class each ping is held,
    with the number of data messages received before it (`held_pings`, and `ping_held` set),
    and the caller pongs (public `pong(data)`) once the client has those messages.

    Relies on the sans-I/O protocol's `recv_frame` (the automatic pong) and its `events`
    list, and on the connection's `process_event`; checked at first use by a self-test on a
    protocol object. None (with a warning) when they are missing or forced public: the proxy
    then pongs as before, and its acknowledgements mean "read by the proxy"."""
    global _held_pong_ok
    if _held_pong_ok is None:
        _held_pong_ok = _check("websockets (forwarding)", _held_pong_missing)
    return _HeldPongConnection if _held_pong_ok else None


def _held_pong_classes() -> tuple[Any, Any]:
    from collections import deque

    from websockets.asyncio.client import ClientConnection
    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode

    class HeldPongProtocol(ClientProtocol):
        def recv_frame(self, frame: Frame) -> None:
            if frame.opcode is Opcode.PING:
                self.events.append(frame)  # all recv_frame does for a ping, but the pong
                return
            super().recv_frame(frame)

    class HeldPongConnection(ClientConnection):
        def __init__(self, protocol: Any, **kwargs: Any) -> None:
            protocol.__class__ = HeldPongProtocol
            super().__init__(protocol, **kwargs)
            self.messages_received = 0
            self.held_pings: deque[tuple[bytes, int]] = deque()
            self.ping_held = asyncio.Event()

        def process_event(self, event: Any) -> None:
            super().process_event(event)
            if not isinstance(event, Frame):
                return  # the handshake's response
            if event.opcode is Opcode.PING:
                self.held_pings.append((bytes(event.data), self.messages_received))
                self.ping_held.set()
            elif event.fin and event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                self.messages_received += 1

    return HeldPongProtocol, HeldPongConnection


def _held_pong_missing() -> str | None:
    from websockets.frames import Frame, Opcode
    from websockets.protocol import State
    from websockets.uri import parse_uri

    protocol_class, _ = _held_pong_classes()
    protocol = protocol_class(parse_uri("ws://localhost/"), state=State.OPEN)
    ping = Frame(Opcode.PING, b"tgws").serialize(mask=False, extensions=[])
    protocol.receive_data(ping)
    events = protocol.events_received()
    if protocol.data_to_send():
        return "a pong held back (ClientProtocol.recv_frame)"
    if [(e.opcode, e.data) for e in events] != [(Opcode.PING, b"tgws")]:
        return "the ping handed on as an event (ClientProtocol.events)"
    if not callable(getattr(_HeldPongConnection, "pong", None)):
        return "ClientConnection.pong()"
    return None


_HeldPongProtocol, _HeldPongConnection = _held_pong_classes()
_held_pong_ok: bool | None = None


# --- Internals with no public twin: checked once at start-up, fatal when missing -----------
def switch_dc(client: Any, dc_id: int) -> Awaitable[None]:
    """QR login on another DC (as Telethon's own QRLogin.wait): a new auth key there."""
    result: Awaitable[None] = client._switch_dc(dc_id)
    return result


def on_login(client: Any, user: Any) -> Awaitable[Any]:
    """What Telethon's sign_in does after success (the client learns who it is)."""
    result: Awaitable[Any] = client._on_login(user)
    return result


def forget_code_hash(client: Any, phone: str) -> None:
    """Drop Telethon's remembered code hash for `phone`: the next send_code_request asks
    auth.sendCode (a new code) rather than auth.resendCode."""
    client._phone_code_hash.pop(phone, None)


def give_action_entities(message: Any, users: list[Any]) -> None:
    """Set what Telethon's `Message.action_entities` returns (its `_action_entities`, which
    `Message._finish_init` fills from a page's users): tgws's history pager skips
    `_finish_init`, and a watch reads a service message's users through that property
    (tgws/live_items.members turns a join found by reconciliation into a member item)."""
    message._action_entities = users


def _action_entities_missing() -> bool:
    from telethon.tl import types

    probe = types.MessageService(id=1, peer_id=types.PeerChannel(1), date=None,
                                 action=types.MessageActionChatAddUser(users=[1]))
    users: list[Any] = [object()]
    try:
        give_action_entities(probe, users)
    except AttributeError:  # a Message with __slots__ that no longer has the field
        return True
    return getattr(probe, "action_entities", None) is not users


def wrap_calls(client: Any, wrap: Callable[[Any], Any]) -> None:
    """Replace the client's `_call` (every request passes it) by `wrap(original)`."""
    client._call = wrap(client._call)


def rsa_fingerprint(key: Any) -> int:
    """Telethon's fingerprint of an RSA public key (what the server's key is known by)."""
    from telethon.crypto import rsa as telethon_rsa

    return int(telethon_rsa._compute_fingerprint(key))


def check_required(client: Any | None = None) -> None:
    """Raise ConfigError naming every internal with no public twin that is missing.

    The daemon calls this before it serves, so a websockets or Telethon release that moved
    one stops tgws at start-up with a clear message rather than failing a QR login later.
    `client` is a Telethon client to inspect (some are instance attributes); by default a
    probe client that never connects."""
    missing = required_missing(client)
    if missing:
        from tgws.errors import ConfigError

        raise ConfigError("the installed libraries lack internals tgws relies on ("
                          + ", ".join(missing) + "): install the versions pyproject.toml pins")


def required_missing(client: Any | None = None) -> list[str]:
    """The names `check_required` would report (empty when everything is there)."""
    from telethon import TelegramClient
    from telethon.crypto import rsa as telethon_rsa
    from telethon.sessions import StringSession

    if client is None:
        client = TelegramClient(StringSession(), 1, "probe")
    missing = [f"TelegramClient.{name}()" for name in ("_switch_dc", "_on_login", "_call")
               if not callable(getattr(client, name, None))]
    if not isinstance(getattr(client, "_phone_code_hash", None), dict):
        missing.append("TelegramClient._phone_code_hash")
    if _action_entities_missing():
        missing.append("Message._action_entities (what Message.action_entities returns)")
    if not callable(getattr(telethon_rsa, "_compute_fingerprint", None)):
        missing.append("telethon.crypto.rsa._compute_fingerprint()")
    # tgws/wsguard.py's GuardedConnection extends these asyncio.Protocol callbacks.
    if not issubclass(ServerConnection, asyncio.Protocol):
        missing.append("websockets ServerConnection as an asyncio.Protocol")
    missing += [f"ServerConnection.{name}()" for name in _PROTOCOL_CALLBACKS
                if not callable(getattr(ServerConnection, name, None))]
    return missing


_PROTOCOL_CALLBACKS = ("connection_made", "data_received", "pause_writing", "resume_writing",
                       "connection_lost")
