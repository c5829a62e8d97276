"""The internals tgws cannot do without are checked at start-up (tgws/fastpath.py).

Each check runs against real Telethon and websockets objects: the installed versions pass,
and a client that lacks one of the internals is named in a ConfigError. The update hooks'
public fallbacks (forced through fastpath.force_public) leave a real client in the state
Telethon's own public set_receive_updates leaves it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from telethon import TelegramClient
from telethon.sessions import StringSession

from tests.support import eventually
from tgws import fastpath
from tgws.errors import ConfigError


@pytest.fixture(autouse=True)
def checked_afresh() -> Iterator[None]:
    fastpath.force_public(False)
    yield
    fastpath.force_public(False)


def probe() -> TelegramClient:
    return TelegramClient(StringSession(), 1, "probe")


def test_the_installed_libraries_have_every_required_internal() -> None:
    assert fastpath.required_missing() == []
    fastpath.check_required()  # does not raise


@pytest.mark.parametrize("name", ["_switch_dc", "_on_login", "_call"])
def test_a_client_without_a_required_method_stops_the_start(name: str) -> None:
    client = probe()
    setattr(client, name, None)  # as a Telethon that no longer has it
    assert fastpath.required_missing(client) == [f"TelegramClient.{name}()"]
    with pytest.raises(ConfigError, match=f"TelegramClient.{name}\\(\\)"):
        fastpath.check_required(client)


def test_a_client_without_the_code_hash_table_stops_the_start() -> None:
    client = probe()
    del client._phone_code_hash
    with pytest.raises(ConfigError, match=r"TelegramClient\._phone_code_hash.*pyproject\.toml"):
        fastpath.check_required(client)


def test_forgetting_a_code_hash_drops_only_that_phone() -> None:
    client = probe()
    client._phone_code_hash.update({"919876543210": "a", "15550001111": "b"})
    fastpath.forget_code_hash(client, "919876543210")
    assert client._phone_code_hash == {"15550001111": "b"}


async def test_update_flag_fast_path_and_public_fallback_agree() -> None:
    client = TelegramClient(StringSession(), 1, "probe", receive_updates=False)
    assert not fastpath.receives_updates(client)  # as tgws builds its clients
    client._no_updates = False  # what set_receive_updates(True) leaves after its getState
    assert fastpath.receives_updates(client)
    fastpath.stop_updates(client)
    assert client._no_updates is True and not fastpath.receives_updates(client)

    fastpath.force_public(True)
    client._no_updates = False
    assert not fastpath.receives_updates(client)  # unknown: the caller asks publicly
    fastpath.stop_updates(client)  # Telethon's public set_receive_updates(False), in a task
    await eventually(lambda: client._no_updates is True, "set_receive_updates(False) ran")


def test_reconnect_and_gap_hooks_are_skipped_on_the_public_path() -> None:
    client = probe()
    callback = client._sender._auto_reconnect_callback
    box_class = type(client._message_box)
    fastpath.force_public(True)
    fastpath.report_reconnects(client, lambda chat: None)
    fastpath.report_too_long(client, lambda chat: None)
    assert client._sender._auto_reconnect_callback == callback
    assert type(client._message_box) is box_class

    fastpath.force_public(False)
    fastpath.report_reconnects(client, lambda chat: None)
    fastpath.report_too_long(client, lambda chat: None)
    assert client._sender._auto_reconnect_callback != callback
    assert type(client._message_box) is not box_class
    fastpath.forget_gap_reports(client)
