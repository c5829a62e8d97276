"""QR login and code resends over the socket, end to end: a real daemon, unmodified Telethon,
the sandbox Telegram scanning with world.login.qr.accept (the "other device")."""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ask, expect, make_config, open_ws, recv_json, timeout
from tgws import protocol as p
from tgws.daemon import Daemon

TL = "telegram login"
OWNER = "+15550000001"  # the demo world's owner
TWO_FA = "+19995550002"  # the demo world's account with a password (hunter2)


def world_truth(daemon: Daemon) -> Any:
    """The daemon's sandbox World."""
    world = getattr(daemon.backend, "world", None)
    assert world is not None, "not a sandbox daemon"
    return world


async def started(tmp_path: Path, **overrides: Any) -> Daemon:
    daemon = Daemon(make_config(tmp_path, **overrides))
    await daemon.start()
    return daemon


async def verified(daemon: Daemon) -> Any:
    assert daemon.app is not None
    key = await daemon.app.store.create_api_key("qr")
    ws = await open_ws(daemon)
    expect(await ask(ws, "login", {"apiKey": key}), "login", "success", p.SEND_PHONE_NUMBER)
    return ws


@contextlib.asynccontextmanager
async def verified_session(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Daemon, Any]]:
    """started() and a verified() socket; the socket is closed after the block, the daemon
    stopped whatever happens."""
    daemon = await started(tmp_path, **overrides)
    try:
        ws = await verified(daemon)
        yield daemon, ws
        await ws.close()
    finally:
        await daemon.stop()


def scan_reply(reply: dict[str, Any]) -> str:
    """The URL of a "scan the QR code" reply, after checking its whole shape."""
    assert reply["event"] == TL, reply
    data = reply["data"]
    assert list(data) == ["status", "message", "url", "expires"], reply
    assert (data["status"], data["message"]) == ("success", p.SCAN_QR)
    assert data["url"].startswith("tg://login?token="), reply
    expires = datetime.datetime.fromisoformat(data["expires"].replace("Z", "+00:00"))
    assert expires.tzinfo is not None
    url: str = data["url"]
    return url


def scanner(daemon: Daemon, phone: str) -> Any:
    world = world_truth(daemon)
    user = world.by_phone(phone)
    assert user is not None
    return world, user


async def test_qr_login_shows_a_url_and_logs_in_once_scanned(tmp_path: Path) -> None:
    async with verified_session(tmp_path) as (daemon, ws):
        world, owner = scanner(daemon, OWNER)
        url = scan_reply(await ask(ws, TL, {"qr": True}))
        world.login.qr.accept(url, owner)
        expect(await recv_json(ws), TL, "success", p.LOGGED_IN)
        # The session is the owner's and stored: streams work, a second login says so.
        expect(await ask(ws, TL, {"qr": True}), TL, "success", p.SESSION_EXISTS_TELEGRAM)
        assert daemon.app is not None
        assert await daemon.app.store.has_session(1)


async def test_each_refreshed_token_is_a_new_reply_and_the_newest_one_logs_in(
        tmp_path: Path) -> None:
    async with verified_session(tmp_path, **{"sandbox.qr_token_ttl": 1.0}) as (daemon, ws):
        world, owner = scanner(daemon, OWNER)
        first = scan_reply(await ask(ws, TL, {"qr": True}))
        second = scan_reply(await recv_json(ws))  # Telegram expired the first: a new code
        assert second != first
        with pytest.raises(Exception, match="AUTH_TOKEN_EXPIRED"):
            world.login.qr.accept(first, owner)
        world.login.qr.accept(second, owner)
        while True:  # a third code may have crossed the scan
            reply = await recv_json(ws)
            if reply["data"]["message"] != p.SCAN_QR:
                break
        expect(reply, TL, "success", p.LOGGED_IN)


async def test_qr_login_of_a_2fa_account_asks_for_the_password(tmp_path: Path) -> None:
    async with verified_session(tmp_path) as (daemon, ws):
        world, account = scanner(daemon, TWO_FA)
        world.login.qr.accept(scan_reply(await ask(ws, TL, {"qr": True})), account)
        expect(await recv_json(ws), TL, "success", p.SEND_PASSWORD)
        expect(await ask(ws, TL, {"phone": OWNER}), TL, "failed", p.PASSWORD_PENDING)
        expect(await ask(ws, TL, {"password": "hunter2"}), TL, "success", p.LOGGED_IN)


async def test_qr_login_of_an_account_on_another_dc(tmp_path: Path) -> None:
    async with verified_session(tmp_path) as (daemon, ws):
        world, owner = scanner(daemon, OWNER)
        world.dcs.place(owner, 4)  # loginTokenMigrateTo(4) -> importLoginToken on DC 4
        world.login.qr.accept(scan_reply(await ask(ws, TL, {"qr": True})), owner)
        expect(await recv_json(ws), TL, "success", p.LOGGED_IN)


async def test_an_unscanned_qr_login_fails_clearly_and_the_phone_login_still_works(
        tmp_path: Path) -> None:
    # Tokens expire on whole seconds (TL dates): one lives 0.5 to 1.5 s here, so at least
    # two are shown before the QR login gives up.
    async with verified_session(tmp_path, **{"sandbox.qr_token_ttl": 0.5,
                                             "telegram.qr_login_timeout": timeout(2.5)}) as (_, ws):
        urls = [scan_reply(await ask(ws, TL, {"qr": True}))]
        while True:
            reply = await recv_json(ws)
            if reply["data"]["status"] != "success":
                break
            urls.append(scan_reply(reply))
        assert reply == {"event": TL, "data": {"status": "failed", "message": p.QR_EXPIRED}}
        assert len(set(urls)) == len(urls) >= 2
        # The connection stays open and is back where it was: the code login works.
        expect(await ask(ws, TL, {"phone": OWNER}), TL, "success", p.SEND_CODE)
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", p.LOGGED_IN)


async def test_the_demo_scans_by_itself(tmp_path: Path) -> None:
    async with verified_session(tmp_path, **{"sandbox.qr_accept_after": 0.05}) as (_, ws):
        scan_reply(await ask(ws, TL, {"qr": True}))
        expect(await recv_json(ws), TL, "success", p.LOGGED_IN)


async def test_resend_names_the_new_delivery_until_telegram_has_no_other_way(
        tmp_path: Path) -> None:
    # A resend sends an SMS or a call too: it counts against [limits] like a first code.
    daemon = await started(tmp_path, **{"limits.send_code_per_phone": 10,
                                        "limits.send_code_per_key": 10})
    try:
        world_truth(daemon).login.delivery = ("app", "sms", "call")
        ws = await verified(daemon)
        expect(await ask(ws, TL, {"resend": True}), TL, "failed", p.SEND_PHONE_FIRST)
        # The seed's reply, byte for byte, when the client did not opt in.
        await ws.send(json.dumps({"event": TL, "data": {"phone": OWNER}}))
        assert await ws.recv() == \
            '{"event": "telegram login", "data": {"status": "success", "message": "send code"}}'
        resent = await ask(ws, TL, {"resend": True})
        assert resent == {"event": TL, "data": {"status": "success", "message": p.SEND_CODE,
                                                "delivery": "sms", "next": "call"}}
        resent = await ask(ws, TL, {"resend": True})
        assert resent["data"] == {"status": "success", "message": p.SEND_CODE,
                                  "delivery": "call", "next": None}
        expect(await ask(ws, TL, {"resend": True}), TL, "failed", p.RESEND_UNAVAILABLE)
        expect(await ask(ws, TL, {"code": "12345"}), TL, "success", p.LOGGED_IN)
        await ws.close()
    finally:
        await daemon.stop()


async def test_a_client_that_opts_in_learns_how_the_first_code_was_sent(
        tmp_path: Path) -> None:
    daemon = await started(tmp_path)
    try:
        world_truth(daemon).login.delivery = ("app", "sms")
        ws = await verified(daemon)
        reply = await ask(ws, TL, {"phone": OWNER, "delivery": True})
        assert reply == {"event": TL, "data": {"status": "success", "message": p.SEND_CODE,
                                               "delivery": "app", "next": "sms"}}
        reply = await ask(ws, TL, {"code": "12345", "delivery": "yes"})  # ignored beside a code
        expect(reply, TL, "success", p.LOGGED_IN)
        await ws.close()
    finally:
        await daemon.stop()


async def test_a_resend_counts_against_the_code_limits(tmp_path: Path) -> None:
    async with verified_session(tmp_path, **{"limits.send_code_per_phone": 2}) as (_, ws):
        expect(await ask(ws, TL, {"phone": OWNER}), TL, "success", p.SEND_CODE)
        assert (await ask(ws, TL, {"resend": True}))["data"]["delivery"] == "call"
        reply = await ask(ws, TL, {"resend": True})
        assert reply["data"]["status"] == "failed"
        assert reply["data"]["message"].startswith("too many login codes requested")


async def test_qr_and_resend_requests_are_checked(tmp_path: Path) -> None:
    async with verified_session(tmp_path) as (_, ws):
        reply = await ask(ws, TL, {"qr": 1})
        assert reply["data"] == {"status": "failed", "message": "'data.qr' must be true"}
        reply = await ask(ws, TL, {"qr": True, "phone": OWNER})
        assert reply["data"]["status"] == "failed"
        assert "exactly one of" in reply["data"]["message"]
        expect(await ask(ws, TL, {"phone": OWNER}), TL, "success", p.SEND_CODE)
        expect(await ask(ws, TL, {"qr": True}), TL, "failed", p.CODE_PENDING)


async def test_qr_login_in_the_hostile_world(tmp_path: Path) -> None:
    # Faults on 5 % of calls (5xx, timeouts, flood waits, drops) and the owner on DC 1: the
    # login still ends logged in, with flood-wait notices at most along the way.
    async with verified_session(tmp_path, **{"sandbox.hostile": True,
                                             "sandbox.seed": 3}) as (daemon, ws):
        world, owner = scanner(daemon, OWNER)
        assert world.dcs.of_user(owner) == 1
        await ws.send(json.dumps({"event": TL, "data": {"qr": True}}))
        while (reply := await recv_json(ws, 30))["data"]["status"] == "progress":
            pass
        world.login.qr.accept(scan_reply(reply), owner)
        while True:
            reply = await recv_json(ws, 30)
            if reply["data"]["status"] != "progress" and reply["data"]["message"] != p.SCAN_QR:
                break
        expect(reply, TL, "success", p.LOGGED_IN)


async def test_a_login_under_way_on_another_connection_of_the_key_is_left_alone(
        tmp_path: Path) -> None:
    daemon = await started(tmp_path)
    try:
        assert daemon.app is not None
        key = await daemon.app.store.create_api_key("shared")
        first, second = await open_ws(daemon), await open_ws(daemon)
        for ws in (first, second):
            expect(await ask(ws, "login", {"apiKey": key}), "login", "success",
                   p.SEND_PHONE_NUMBER)
        expect(await ask(first, TL, {"phone": OWNER}), TL, "success", p.SEND_CODE)
        # Neither a QR login nor a resend on the second connection takes the login over.
        expect(await ask(second, TL, {"qr": True}), TL, "failed", p.CODE_ELSEWHERE)
        expect(await ask(second, TL, {"resend": True}), TL, "failed", p.SEND_PHONE_FIRST)
        expect(await ask(first, TL, {"code": "12345"}), TL, "success", p.LOGGED_IN)
        for ws in (first, second):
            await ws.close()
    finally:
        await daemon.stop()
