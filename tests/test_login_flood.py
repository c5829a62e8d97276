"""Telegram's login floods held by tgws's own cool-down (issue 10), end to end.

PHONE_NUMBER_FLOOD and PHONE_PASSWORD_FLOOD say nothing about how long they last, and every
attempt made meanwhile extends them. After one, tgws refuses codes for that phone (whichever
API key asks) for [limits] phone_flood_cooldown, and passwords of that API key for
password_flood_cooldown, without asking Telegram; each failed reply names the seconds left
and the socket stays open. Real daemon on 127.0.0.1, real websocket client, unmodified
Telethon against the sandbox, whose fault plan scripts the floods (world.fail).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.support import ask, eventually, expect, make_config, open_ws
from tgws import protocol as p
from tgws.daemon import Daemon
from tgws.errors import ConfigError
from tgws.login_guard import phone_key
from tgws.sandbox.demo import PASSWORD, PASSWORD_PHONE

Start = Callable[..., Awaitable[Daemon]]  # conftest's start_daemon
TL = "telegram login"
PHONE = "+15551234567"
OTHER_PHONE = "+15557654321"
LONG = 600.0  # a cool-down no test outlives
SHORT = 0.3  # a cool-down a test waits out


@pytest.fixture
def started(start_daemon: Start) -> Start:
    """Start a daemon with these cool-downs (and more config overrides); stopped at the end."""

    async def start(phone: float = LONG, password: float = LONG, **overrides: Any) -> Daemon:
        return await start_daemon(**{"limits.phone_flood_cooldown": phone,
                                     "limits.password_flood_cooldown": password, **overrides})

    return start


def world(daemon: Daemon) -> Any:
    assert daemon.backend is not None
    return daemon.backend.world


def calls(daemon: Daemon, method: str | None = None) -> int:
    """Requests that reached the sandbox Telegram: all of them, or of one method."""
    faults = world(daemon).faults
    return int(faults.calls if method is None else faults.per_method[method])


async def new_key(daemon: Daemon, name: str) -> str:
    assert daemon.app is not None
    return await daemon.app.store.create_api_key(name)


async def verified(daemon: Daemon, key: str) -> ClientConnection:
    ws = await open_ws(daemon)
    expect(await ask(ws, "login", {"apiKey": key}), "login", "success", p.SEND_PHONE_NUMBER)
    return ws


def refused(reply: dict[str, Any], template: str) -> int:
    """The seconds a flood refusal names, checked to be the reply's whole shape."""
    seconds = reply["data"].get("retry_after")
    assert isinstance(seconds, int) and seconds >= 1, reply
    assert reply == {"event": TL, "data": {"status": "failed",
                                           "message": template.format(seconds=seconds),
                                           "retry_after": seconds}}, reply
    return seconds


async def until_released(daemon: Daemon, phone: str | None = None,
                         api_key_id: int | None = None) -> None:
    """Wait until the daemon's hold of this phone (or key's passwords) has ended."""
    app = daemon.app
    assert app is not None
    floods = app.login_floods
    if phone is not None:
        key = phone_key(phone)
        await eventually(lambda: not floods.phone.left(key, now=time.monotonic()),
                         "the phone's cool-down to end")
    else:
        assert api_key_id is not None
        await eventually(lambda: not floods.password.left(api_key_id, now=time.monotonic()),
                         "the password cool-down to end")


# -- phone floods ---------------------------------------------------------------------------


async def test_a_phone_flood_names_the_cooldown_and_holds_that_phone_for_every_key(
        started: Callable[..., Awaitable[Daemon]]) -> None:
    daemon = await started()
    world(daemon).fail("SendCode", "PHONE_NUMBER_FLOOD")
    first, second = await new_key(daemon, "first"), await new_key(daemon, "second")
    async with await verified(daemon, first) as ws:
        assert refused(await ask(ws, TL, {"phone": PHONE}), p.PHONE_FLOOD) == int(LONG)
        asked = calls(daemon, "SendCodeRequest")
        everything = calls(daemon)
        # The same number again, in another spelling, on the same open socket: refused by
        # tgws, and nothing reaches Telegram.
        assert 1 <= refused(await ask(ws, TL, {"phone": "1 555 123-4567"}),
                            p.PHONE_FLOOD) <= int(LONG)
        async with await verified(daemon, second) as other:  # whichever key asks
            assert refused(await ask(other, TL, {"phone": PHONE}), p.PHONE_FLOOD) >= 1
        assert calls(daemon) == everything
        # Another phone is not held: its code is asked of Telegram and sent.
        expect(await ask(ws, TL, {"phone": OTHER_PHONE}), TL, "success", p.SEND_CODE)
        assert calls(daemon, "SendCodeRequest") == asked + 1


async def test_after_the_phone_cooldown_the_code_is_asked_of_telegram_again(
        started: Callable[..., Awaitable[Daemon]]) -> None:
    daemon = await started(phone=SHORT)
    world(daemon).fail("SendCode", "PHONE_NUMBER_FLOOD")
    async with await verified(daemon, await new_key(daemon, "patient")) as ws:
        reply = await ask(ws, TL, {"phone": PHONE})
        assert refused(reply, p.PHONE_FLOOD) == 1  # 0.3 s, rounded up
        asked = calls(daemon, "SendCodeRequest")
        await until_released(daemon, phone=PHONE)
        expect(await ask(ws, TL, {"phone": PHONE}), TL, "success", p.SEND_CODE)
        assert calls(daemon, "SendCodeRequest") == asked + 1


async def test_a_held_phone_costs_no_send_code_allowance(
        started: Callable[..., Awaitable[Daemon]]) -> None:
    # Two codes per phone per window; the flood spent one. Attempts refused during the hold
    # must not spend the other, or the first one after it would be refused by [limits].
    daemon = await started(phone=2.0, **{"limits.send_code_per_phone": 2})
    world(daemon).fail("SendCode", "PHONE_NUMBER_FLOOD")
    async with await verified(daemon, await new_key(daemon, "retrier")) as ws:
        refused(await ask(ws, TL, {"phone": PHONE}), p.PHONE_FLOOD)
        held = 0
        for _ in range(3):
            reply = await ask(ws, TL, {"phone": PHONE})
            if reply["data"]["message"] == p.SEND_CODE:  # a very slow machine: the hold ended
                break
            refused(reply, p.PHONE_FLOOD)
            held += 1
        else:
            await until_released(daemon, phone=PHONE)
            reply = await ask(ws, TL, {"phone": PHONE})
        assert held >= 1
        expect(reply, TL, "success", p.SEND_CODE)


@pytest.mark.parametrize(("method", "data"), [
    ("ResendCode", {"resend": True}),  # tgws/qr_login.py resend_code
    ("SignIn", {"code": "12345"}),
])
async def test_a_phone_flood_after_the_code_was_sent_holds_the_pending_phone(
        started: Callable[..., Awaitable[Daemon]], method: str, data: dict[str, Any]) -> None:
    daemon = await started()
    async with await verified(daemon, await new_key(daemon, "owner")) as ws:
        expect(await ask(ws, TL, {"phone": PHONE}), TL, "success", p.SEND_CODE)
        world(daemon).fail(method, "PHONE_NUMBER_FLOOD")
        assert refused(await ask(ws, TL, data), p.PHONE_FLOOD) == int(LONG)
    everything = calls(daemon)
    async with await verified(daemon, await new_key(daemon, "other")) as ws:
        assert refused(await ask(ws, TL, {"phone": PHONE}), p.PHONE_FLOOD) >= 1
    assert calls(daemon) == everything


# -- password floods ------------------------------------------------------------------------


async def password_asked(daemon: Daemon, key: str) -> ClientConnection:
    """A connection of `key` whose login of the 2FA account waits for the password."""
    ws = await verified(daemon, key)
    expect(await ask(ws, TL, {"phone": PASSWORD_PHONE}), TL, "success", p.SEND_CODE)
    expect(await ask(ws, TL, {"code": "12345"}), TL, "success", p.SEND_PASSWORD)
    return ws


async def test_a_password_flood_names_the_cooldown_and_holds_the_keys_passwords(
        started: Callable[..., Awaitable[Daemon]]) -> None:
    daemon = await started()
    world(daemon).fail("CheckPassword", "PHONE_PASSWORD_FLOOD")
    async with await password_asked(daemon, await new_key(daemon, "2fa")) as ws:
        assert refused(await ask(ws, TL, {"password": PASSWORD}),
                       p.PASSWORD_FLOOD) == int(LONG)
        everything = calls(daemon)
        # The right password, on the same open socket: refused by tgws, Telegram not asked.
        assert 1 <= refused(await ask(ws, TL, {"password": PASSWORD}),
                            p.PASSWORD_FLOOD) <= int(LONG)
        assert calls(daemon) == everything


async def test_after_the_password_cooldown_the_password_is_checked_again(
        started: Callable[..., Awaitable[Daemon]]) -> None:
    daemon = await started(password=SHORT)
    world(daemon).fail("CheckPassword", "PHONE_PASSWORD_FLOOD")
    key = await new_key(daemon, "2fa")
    assert daemon.app is not None
    record = await daemon.app.store.verify_api_key(key)
    assert record is not None
    async with await password_asked(daemon, key) as ws:
        assert refused(await ask(ws, TL, {"password": PASSWORD}), p.PASSWORD_FLOOD) == 1
        checks = calls(daemon, "CheckPasswordRequest")
        await until_released(daemon, api_key_id=record.id)
        expect(await ask(ws, TL, {"password": PASSWORD}), TL, "success", p.LOGGED_IN)
        assert calls(daemon, "CheckPasswordRequest") == checks + 1


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["limits.phone_flood_cooldown",
                                 "limits.password_flood_cooldown"])
def test_a_cooldown_must_be_positive(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_config(tmp_path, **{key: 0.0})
