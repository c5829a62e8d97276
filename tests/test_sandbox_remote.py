"""One sandbox Telegram for many processes: `tgws sandbox serve` as a subprocess, reached by
unmodified Telethon through RemoteSandboxSender and by `tgws serve` daemons with [sandbox] url.

What is proven here: the TL bytes Telethon serializes reach the shared world and its answers
(results, RPC errors, a login's new key, pushed updates) come back as Telethon objects; a
dropped connection is reconnected and the waiting request re-sent; a refusing or absent
server fails within the client's retries; one auth key used from two processes at once is
answered AUTH_KEY_DUPLICATED and recorded, while a key whose first user went away (closed,
or silent past the idle timeout as a paused process is) is not; two daemons, each with its
own sqlite store, see the same world; `tgws demo --sandbox-url` serves from it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from telethon import TelegramClient, errors, events
from telethon.sessions import StringSession
from telethon.tl.functions.contacts import ResolveUsernameRequest
from telethon.tl.functions.users import GetUsersRequest
from telethon.tl.types import InputUserSelf
from websockets.asyncio.client import ClientConnection, connect

from tests.daemon_process import DaemonProcess
from tests.demo_process import DemoProcess
from tests.sandbox_process import SandboxProcess
from tests.support import ask, collect_stream, expect, timeout
from tgws.protocol import SESSION_EXPIRED
from tgws.sandbox.link import ID, frame, json_frame, read_frame
from tgws.sandbox.remote import admin, make_remote_client

GROUP = "testgroup00002"  # 120 messages in the demo world
IDLE = 2.0  # the server's idle timeout here, scaled (a paused client is closed after it)


@pytest.fixture
def sandbox() -> Iterator[SandboxProcess]:
    server = SandboxProcess(idle_timeout=IDLE)
    yield server
    server.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[TelegramClient]]:
    made: list[TelegramClient] = []
    yield made
    for client in made:
        await client.disconnect()


def remote(sandbox: SandboxProcess, made: list[TelegramClient], session: str = "",
           **options: Any) -> TelegramClient:
    settings: dict[str, Any] = {"flood_sleep_threshold": 0, "receive_updates": False,
                                "connection_retries": 2, "retry_delay": 0, **options}
    client = make_remote_client(sandbox.url, StringSession(session), **settings)
    made.append(client)
    return client


async def session_for(sandbox: SandboxProcess, phone: str) -> str:
    answer = await admin(sandbox.url, "session", phone=phone)
    session: str = answer["session"]
    return session


async def two_hosts(sandbox: SandboxProcess, made: list[TelegramClient],
                    phone: str) -> tuple[TelegramClient, TelegramClient]:
    """Two clients on one session (one auth key), as hosts "host-a" and "host-b" would run it."""
    session = await session_for(sandbox, phone)
    return (remote(sandbox, made, session, origin="host-a"),
            remote(sandbox, made, session, origin="host-b"))


# --- Telethon through the shared sandbox -------------------------------------------------------

async def test_telethon_logs_in_and_reads_history_through_the_shared_sandbox(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    client = remote(sandbox, clients)
    async with asyncio.timeout(timeout(30)):
        await client.connect()
        sent = await client.send_code_request("+15550003333")
        await client.sign_in("+15550003333", "12345", phone_code_hash=sent.phone_code_hash)
        me = await client.get_me()
        messages = await client.get_messages(GROUP, limit=5)
        with pytest.raises(errors.UsernameNotOccupiedError):  # an RPC error, as Telethon's
            await client(ResolveUsernameRequest("nosuchgroup12345"))
    assert me.phone == "15550003333"
    assert [m.id for m in messages] == [120, 119, 118, 117, 116]
    # The login's new key came back over the link and is in the session: a new process
    # (here: another client after this one is gone) is logged in with it.
    saved = client.session.save()
    await client.disconnect()
    again = remote(sandbox, clients, saved)
    async with asyncio.timeout(timeout(30)):
        await again.connect()
        assert (await again.get_me()).id == me.id
    stats = await admin(sandbox.url, "stats")
    assert stats["duplicates"] == []


async def test_a_post_in_the_shared_world_is_pushed_to_a_client_that_follows_updates(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    # The demo's owner: a member of testgroup00001 (pushes go to members).
    client = remote(sandbox, clients, await session_for(sandbox, "+15550000001"),
                    receive_updates=True)
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(event: Any) -> None:
        seen.put_nowait(event.raw_text)

    client.add_event_handler(on_message, events.NewMessage())

    async with asyncio.timeout(timeout(30)):
        await client.connect()
        await client.get_entity("testgroup00001")
        answer = await admin(sandbox.url, "post", chat="testgroup00001", text="pushed over TCP")
        assert answer["ok"], answer
        assert await seen.get() == "pushed over TCP"


async def test_a_dropped_connection_reconnects_and_re_sends_the_waiting_request(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    client = remote(sandbox, clients, await session_for(sandbox, "+15550005555"))
    async with asyncio.timeout(timeout(30)):
        await client.connect()
        group = await client.get_input_entity(GROUP)
        await admin(sandbox.url, "script", method="GetHistory", kind="drop")
        calls = (await admin(sandbox.url, "stats"))["calls"]
        messages = await client.get_messages(group, limit=3)
        # The dropped GetHistory, the re-sent one, and the get_me Telethon's own
        # _handle_auto_reconnect makes after a reconnect (MTProtoSender calls it too).
        await server_stats(sandbox, lambda stats: stats["calls"] == calls + 3)
    assert [m.id for m in messages] == [120, 119, 118]
    assert client._sender.reconnects == 1


async def test_rpc_errors_the_server_decides_reach_telethon_as_its_own_exceptions(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    client = remote(sandbox, clients, await session_for(sandbox, "+15550001414"),
                    request_retries=1)
    async with asyncio.timeout(timeout(30)):
        await client.connect()
        await admin(sandbox.url, "script", method="GetHistory", kind="flood")
        with pytest.raises(errors.FloodWaitError) as flood:
            await client.get_messages(GROUP, limit=3)
        assert flood.value.seconds == 1
        await admin(sandbox.url, "fail", method="GetHistory", error="CHANNEL_PRIVATE")
        with pytest.raises(errors.ChannelPrivateError):
            await client.get_messages(GROUP, limit=3)
        assert [m.id for m in await client.get_messages(GROUP, limit=1)] == [120]


async def test_a_refusing_server_fails_the_connect_after_the_client_retries(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    await admin(sandbox.url, "faults", mode="refuse")
    client = remote(sandbox, clients, await session_for(sandbox, "+15550006666"))
    async with asyncio.timeout(timeout(30)):
        with pytest.raises(ConnectionError, match="failed 2 time"):
            await client.connect()
        await admin(sandbox.url, "faults", mode="resume")
        await client.connect()
        assert (await client.get_me()).phone == "15550006666"


async def test_no_server_at_the_address_fails_within_the_client_retries(
        clients: list[TelegramClient]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = make_remote_client(f"tcp://127.0.0.1:{port}", StringSession(),
                                connection_retries=2, retry_delay=0, receive_updates=False)
    clients.append(client)
    async with asyncio.timeout(timeout(10)):
        with pytest.raises(ConnectionError):
            await client.connect()


# --- AUTH_KEY_DUPLICATED ----------------------------------------------------------------------

async def test_one_key_from_two_processes_at_once_is_auth_key_duplicated_and_recorded(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    first, second = await two_hosts(sandbox, clients, "+15550007777")
    async with asyncio.timeout(timeout(30)):
        await first.connect()
        await first.get_me()
        with pytest.raises(errors.AuthKeyDuplicatedError):
            await second.connect()  # Telethon's initConnection is the first use
        # As on Telegram, the key is dead for everybody now.
        with pytest.raises(errors.AuthKeyDuplicatedError):
            await first.get_me()
        stats = await admin(sandbox.url, "stats")
    [event] = stats["duplicates"]
    assert (event["origin"], event["others"]) == ("host-b", ["host-a"])
    assert stats["answered_duplicated"] >= 2
    await logged(sandbox, f"AUTH_KEY_DUPLICATED key={event['key']}")


async def test_one_key_used_after_its_first_user_disconnected_is_not_duplicated(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    first, second = await two_hosts(sandbox, clients, "+15550008888")
    async with asyncio.timeout(timeout(30)):
        await first.connect()
        await first.get_me()
        await first.disconnect()
        await second.connect()
        assert (await second.get_me()).phone == "15550008888"
    assert (await admin(sandbox.url, "stats"))["duplicates"] == []


async def test_a_silent_connection_is_closed_so_a_paused_process_does_not_hold_its_key(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    """A SIGSTOPped daemon keeps its socket open but sends nothing, not even heartbeats: the
    server closes it after the idle timeout, so the daemon that takes the account over meets
    no AUTH_KEY_DUPLICATED; the paused one, sending again, would."""
    session = StringSession(await session_for(sandbox, "+15550009999"))
    key: bytes = session.auth_key.key
    host, port = sandbox.url.removeprefix("tcp://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(json_frame(b"H", {"v": 1, "key": key.hex(), "dc": session.dc_id,
                                       "origin": "paused-host", "session": "s1"}))
        request = GetUsersRequest([InputUserSelf()])
        writer.write(frame(b"R", ID.pack(1) + bytes(request)))
        async with asyncio.timeout(timeout(10)):
            kinds = []
            while b"r" not in kinds:
                kind, _ = await read_frame(reader)
                kinds.append(kind)
            # ... then silence: the server hangs up after IDLE seconds.
            with pytest.raises(EOFError):
                while True:
                    await read_frame(reader)
    finally:
        writer.close()
    taker = remote(sandbox, clients, session.save(), origin="taker-host")
    async with asyncio.timeout(timeout(30)):
        await taker.connect()
        assert (await taker.get_me()).phone == "15550009999"
    assert (await admin(sandbox.url, "stats"))["duplicates"] == []


# --- daemons on the shared sandbox ---------------------------------------------------------------

def daemon_config(tmp: Path, name: str, sandbox: SandboxProcess) -> Path:
    home = tmp / name
    home.mkdir()
    path = home / "tgws.toml"
    path.write_text('[server]\nport = 0\nshutdown_timeout = 5.0\n'
                    f'[store]\npath = "{home / "tgws.db"}"\n'  # each daemon its own store
                    '[telegram]\nbackend = "sandbox"\n'
                    f'[sandbox]\nurl = "{sandbox.url}"\n')
    return path


def create_key(config: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "tgws", "apikey", "--config", str(config),
                          "create", "client"], capture_output=True, text=True, check=True,
                         timeout=timeout(30))
    return out.stdout.strip().splitlines()[-1]


def start_daemon(config: Path, started: list[DaemonProcess]) -> DaemonProcess:
    proc = DaemonProcess(config.parent, "--config", str(config))
    started.append(proc)
    proc.wait_ready()
    return proc


async def open_ws(port: int) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/ws/telegram/", max_size=2**24)


async def login(ws: ClientConnection, key: str, phone: str) -> None:
    reply = await ask(ws, "login", {"apiKey": key})
    if reply["data"]["message"] == "session already exists, call 'users'.":
        return
    expect(reply, "login", "success", "send phone number")
    expect(await ask(ws, "telegram login", {"phone": phone}), "telegram login", "success",
           "send code")
    expect(await ask(ws, "telegram login", {"code": "12345"}), "telegram login", "success",
           "logged in successfully")


async def latest(ws: ClientConnection, group: str) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"event": "chats", "data": {
        "group": [{"name": group, "status": "latest"}], "status": ""}}))
    items, _ = await collect_stream(ws, "chats")
    return items


async def test_two_daemons_each_with_its_own_store_see_one_shared_world(
        tmp_path: Path, sandbox: SandboxProcess, processes: list[DaemonProcess]) -> None:
    configs = [daemon_config(tmp_path, name, sandbox) for name in ("a", "b")]
    keys = [create_key(config) for config in configs]
    procs = [start_daemon(config, processes) for config in configs]
    sockets = [await open_ws(proc.port) for proc in procs]
    try:
        for ws, key, phone in zip(sockets, keys, ("+15550001111", "+15550002222"), strict=True):
            await login(ws, key, phone)
            assert len(await latest(ws, GROUP)) == 120  # the first `latest` sends everything
        answer = await admin(sandbox.url, "post", chat=GROUP, text="one world, two daemons")
        for ws in sockets:
            [item] = await latest(ws, GROUP)
            assert item["chat"]["id"] == answer["id"] == 121
            assert "one world, two daemons" in json.dumps(item)
    finally:
        for ws in sockets:
            await ws.close()
    assert (await admin(sandbox.url, "stats"))["duplicates"] == []


async def test_one_session_in_two_daemons_at_once_is_auth_key_duplicated_and_recorded(
        tmp_path: Path, sandbox: SandboxProcess, processes: list[DaemonProcess]) -> None:
    from tgws.store import Store

    session = await session_for(sandbox, "+15550001212")
    configs = [daemon_config(tmp_path, name, sandbox) for name in ("a", "b")]
    keys = []
    for config in configs:  # the same Telegram session copied into both stores
        key = create_key(config)
        async with await Store.open(str(config.parent / "tgws.db")) as store:
            [record] = await store.list_api_keys()
            await store.save_session(record.id, session, None)
        keys.append(key)
    procs = [start_daemon(config, processes) for config in configs]
    sockets = [await open_ws(proc.port) for proc in procs]
    try:
        await login(sockets[0], keys[0], "")
        assert len(await latest(sockets[0], GROUP)) == 120
        reply = await ask(sockets[1], "login", {"apiKey": keys[1]}, wait=30)
        if reply["data"]["status"] == "success":  # the session is used at the first request
            await sockets[1].send(json.dumps({"event": "chats", "data": {
                "group": [{"name": GROUP, "status": "latest"}], "status": ""}}))
            async with asyncio.timeout(timeout(30)):
                reply = json.loads(await sockets[1].recv())
        # The gateway's reply for Telethon's AuthKeyDuplicatedError: Telegram invalidated
        # the key, so the session is as dead as a revoked one.
        assert reply["data"]["status"] == "failed", reply
        assert reply["data"]["message"] == SESSION_EXPIRED, reply
    finally:
        for ws in sockets:
            await ws.close()
    stats = await admin(sandbox.url, "stats")
    assert len(stats["duplicates"]) == 1, stats
    event = stats["duplicates"][0]
    assert event["origin"] != event["others"][0]
    await logged(sandbox, f"AUTH_KEY_DUPLICATED key={event['key']}")


async def server_stats(sandbox: SandboxProcess, check: Any) -> dict[str, Any]:
    """The server's stats once `check(stats)` holds (asked again until then)."""
    deadline = time.monotonic() + timeout(10)
    while True:
        stats = await admin(sandbox.url, "stats")
        if check(stats):
            return stats
        assert time.monotonic() < deadline, stats
        await asyncio.sleep(0.02)


async def logged(sandbox: SandboxProcess, text: str) -> None:
    """Wait until the sandbox server's stderr holds `text`."""
    deadline = time.monotonic() + timeout(10)
    while text not in sandbox.stderr:
        assert time.monotonic() < deadline, sandbox.stderr
        await asyncio.sleep(0.05)


async def test_the_demo_runs_against_the_shared_sandbox(
        tmp_path: Path, sandbox: SandboxProcess) -> None:
    demo = DemoProcess(tmp_path, "--sandbox-url", sandbox.url, start_wait=30, client_wait=60)
    try:
        url = re.search(r"websocket\s+(ws://\S+)", demo.text)
        key = re.search(r"api key\s+(\S+)", demo.text)
        assert url and key, demo.text
        assert sandbox.url in demo.text
        await admin(sandbox.url, "post", chat=GROUP, text="seen by the demo")
        async with connect(url.group(1)) as ws:
            await login(ws, key.group(1), "+919876543210")
            items = await latest(ws, GROUP)
        assert len(items) == 121
        assert "seen by the demo" in json.dumps(next(i for i in items if i["chat"]["id"] == 121))
    finally:
        demo.close()


async def test_a_stalled_server_holds_the_answer_until_it_resumes(
        sandbox: SandboxProcess, clients: list[TelegramClient]) -> None:
    client = remote(sandbox, clients, await session_for(sandbox, "+15550001313"))
    async with asyncio.timeout(timeout(30)):
        await client.connect()
        await admin(sandbox.url, "faults", mode="stall")
        calls = (await admin(sandbox.url, "stats"))["calls"]
        waiting = asyncio.ensure_future(client.get_me())
        # The request reached the server and was decided (one more call), and is held.
        await server_stats(sandbox, lambda stats: stats["calls"] > calls)
        assert not waiting.done()
        await admin(sandbox.url, "faults", mode="resume")
        assert (await waiting).phone == "15550001313"


async def test_the_hostile_world_migrates_a_login_to_the_accounts_data_centre(
        clients: list[TelegramClient]) -> None:
    server = SandboxProcess("--hostile", "--seed", "0")
    try:
        await admin(server.url, "faults", mode="calm")  # DCs, not random faults, are tested
        client = remote(server, clients)
        async with asyncio.timeout(timeout(60)):
            await client.connect()
            sent = await client.send_code_request("+15550000001")  # PHONE_MIGRATE_1
            await client.sign_in("+15550000001", "12345", phone_code_hash=sent.phone_code_hash)
            me = await client.get_me()
        assert me.phone == "15550000001"
        assert client.session.dc_id == client._sender.dc == 1
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients))
        server.stop()


def test_sandbox_url_makes_the_daemons_backend_the_remote_one(tmp_path: Path) -> None:
    from tests.support import make_config
    from tgws.backends import RemoteSandboxBackend, SandboxBackend, build_backend
    from tgws.errors import ConfigError

    backend = build_backend(make_config(tmp_path, **{"sandbox.url": "tcp://127.0.0.1:7777"}))
    assert isinstance(backend, RemoteSandboxBackend)
    assert backend.address == ("127.0.0.1", 7777)
    assert isinstance(build_backend(make_config(tmp_path)), SandboxBackend)
    for wrong in ("http://127.0.0.1:7777", "127.0.0.1", "tcp://127.0.0.1:port"):
        with pytest.raises(ConfigError, match=r"sandbox\.url"):
            make_config(tmp_path, **{"sandbox.url": wrong})


async def test_a_paused_daemon_does_not_hold_its_key_but_is_caught_when_it_calls_again(
        tmp_path: Path, sandbox: SandboxProcess, processes: list[DaemonProcess]) -> None:
    """SIGSTOP the daemon running an account: its connection falls silent and the sandbox
    closes it, so a second daemon takes the same session over without AUTH_KEY_DUPLICATED.
    SIGCONT it and let it call Telegram for the account: that is two daemons running one
    account at once, answered AUTH_KEY_DUPLICATED and recorded."""
    from tgws.store import Store

    session = await session_for(sandbox, "+15550001515")
    configs = [daemon_config(tmp_path, name, sandbox) for name in ("a", "b")]
    keys = []
    for config in configs:
        keys.append(create_key(config))
        async with await Store.open(str(config.parent / "tgws.db")) as store:
            [record] = await store.list_api_keys()
            await store.save_session(record.id, session, None)
    first = start_daemon(configs[0], processes)
    second = start_daemon(configs[1], processes)
    ws_first, ws_second = await open_ws(first.port), await open_ws(second.port)
    try:
        await login(ws_first, keys[0], "")
        assert len(await latest(ws_first, GROUP)) == 120
        first.signal(signal.SIGSTOP)
        try:
            # Only the stats connection itself is left once the paused one is closed.
            await server_stats(sandbox, lambda stats: stats["connections"] == 1)
            await login(ws_second, keys[1], "")
            assert len(await latest(ws_second, GROUP)) == 120
            assert (await admin(sandbox.url, "stats"))["duplicates"] == []
        finally:
            first.signal(signal.SIGCONT)
        # The second daemon still runs the account (its link stays live, its websocket
        # open); the resumed first daemon now calls Telegram with the same key.
        await ws_first.send(json.dumps({"event": "chats", "data": {
            "group": [{"name": GROUP, "status": "latest"}], "status": ""}}))
        async with asyncio.timeout(timeout(30)):
            reply = json.loads(await ws_first.recv())
        assert reply["data"]["status"] == "failed", reply
        assert reply["data"]["message"] == SESSION_EXPIRED, reply  # AUTH_KEY_DUPLICATED
    finally:
        await ws_first.close()
        await ws_second.close()
    [event] = (await admin(sandbox.url, "stats"))["duplicates"]
    await logged(sandbox, f"AUTH_KEY_DUPLICATED key={event['key']}")
