"""tgws.protocol: the seed's strings byte for byte, parse() of every request shape and of
garbage, and the exact shape of replies.

The seed document (the user's API description) is copied into tests/data/seed-protocol.md so
the test runs on a clean clone; when the shared original is next to the repo, the copy is
checked against it too.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgws import protocol as p
from tgws.errors import CloseCode, Refusal

SEED = Path(__file__).parent / "data" / "seed-protocol.md"
SHARED_SEED = Path(__file__).resolve().parents[2] / "shared" / "protocol" / "seed-protocol.md"

# Every reply string of the seed, with the event and status it is sent under.
SEED_REPLIES: set[tuple[str, str, str]] = {
    (p.LOGIN, p.SUCCESS, p.SEND_PHONE_NUMBER),
    (p.LOGIN, p.FAILED, p.UNAUTHORIZED),
    (p.LOGIN, p.SUCCESS, p.ALREADY_VERIFIED),
    (p.LOGIN, p.SUCCESS, p.SESSION_EXISTS_LOGIN),
    (p.TELEGRAM_LOGIN, p.SUCCESS, p.SEND_CODE),
    (p.TELEGRAM_LOGIN, p.FAILED, p.INVALID_PHONE),
    (p.TELEGRAM_LOGIN, p.SUCCESS, p.LOGGED_IN),
    (p.TELEGRAM_LOGIN, p.FAILED, p.INVALID_CODE),
    (p.TELEGRAM_LOGIN, p.FAILED, p.VERIFY_API_KEY_FIRST),
    (p.TELEGRAM_LOGIN, p.SUCCESS, p.SESSION_EXISTS_TELEGRAM),
    (p.USERS, p.SUCCESS, p.SENDING_USERS),
    (p.USERS, p.FAILED, p.IS_A_CHANNEL),
    (p.USERS, p.FAILED, p.DOES_NOT_EXIST),
    (p.CHATS, p.SUCCESS, p.SENDING_CHATS),
    (p.CHATS, p.FAILED, p.INVALID_REQUEST),
}


# --- reading the seed document ---------------------------------------------------------------
def _seed_text() -> str:
    return SEED.read_text(encoding="utf-8")


def _json_blocks(section: str) -> list[dict[str, Any]]:
    """The leading JSON object of every ```json block in `section` (some blocks go on with
    prose such as "...Data will be sent in this formar:", which raw_decode leaves alone)."""
    out: list[dict[str, Any]] = []
    for body in re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL):
        value, _ = json.JSONDecoder().raw_decode(body.strip())
        assert isinstance(value, dict)
        out.append(value)
    return out


def _seed_sections() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(requests, responses) of the seed, in document order."""
    requests: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []
    parts = re.split(r"^### (Request:|Response\(s\):)\s*$", _seed_text(), flags=re.MULTILINE)
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        (requests if heading == "Request:" else responses).extend(_json_blocks(body))
    return requests, responses


# SHA-256 of the user's seed document as received (../shared/protocol/seed-protocol.md).
SEED_SHA256 = "2708b26a0668bc4621fbe645a99d283dcf46570e517be00fe84d67db2a11adfe"


def test_seed_copy_in_repo_is_the_users_document_unedited() -> None:
    # The copy is what every other test here reads, so it must be the original byte for
    # byte; where the original sits next to this checkout, compare with it too.
    copy = SEED.read_bytes()
    assert hashlib.sha256(copy).hexdigest() == SEED_SHA256
    if SHARED_SEED.exists():
        assert copy == SHARED_SEED.read_bytes()


def test_seed_document_holds_six_requests_and_fifteen_responses() -> None:
    requests, responses = _seed_sections()
    assert len(requests) == 6
    assert len(responses) == 15  # the streamed-item examples share a block


def test_every_seed_reply_string_constant_equals_the_seed_text_byte_for_byte() -> None:
    _, responses = _seed_sections()
    in_document = {
        (r["event"], r["data"]["status"], r["data"]["message"])
        for r in responses
        if isinstance(r["data"]["message"], str)
    }
    assert in_document == SEED_REPLIES


@pytest.mark.parametrize(
    "constant",
    sorted(message for _, _, message in SEED_REPLIES),
)
def test_seed_reply_string_appears_quoted_in_the_seed_document(constant: str) -> None:
    assert f'"message": "{constant}"' in _seed_text()


def test_seed_quirks_are_kept() -> None:
    assert p.SESSION_EXISTS_TELEGRAM == "session alreay exists, call 'users'"
    assert p.SESSION_EXISTS_LOGIN == "session already exists, call 'users'."
    assert p.ALREADY_VERIFIED == "Already verified. Send data to 'telegram login' or 'users'."


def test_seed_responses_are_reproduced_by_reply() -> None:
    _, responses = _seed_sections()
    for response in responses:
        data = response["data"]
        produced = p.reply(response["event"], data["status"], data["message"])
        assert json.loads(produced) == response


def test_seed_event_names_match_the_document_headings() -> None:
    requests, _ = _seed_sections()
    assert [r["event"] for r in requests] == [
        p.LOGIN, p.TELEGRAM_LOGIN, p.USERS, p.USERS, p.CHATS, p.CHATS,
    ]


def test_every_seed_request_parses_to_its_dataclass() -> None:
    requests, _ = _seed_sections()
    parsed = [p.parse(json.dumps(r)) for r in requests]
    assert parsed == [
        p.Login(api_key="alkflknsdnfsjkn.ksalfjksdhksdsfdsdfsdf.lkszmlsknmskjdns"),
        p.TelegramLogin(phone="+919876543210"),
        p.Users(groups=("testgroup00001", "testgroup00002"), latest=False),
        p.Users(groups=("testgroup00001", "testgroup00002"), latest=True),
        p.Chats(groups=(p.ChatTarget("UnderWorld4444", latest=False),)),
        p.Chats(groups=(p.ChatTarget("UnderWorld4444", latest=True),)),
    ]


def test_seed_requests_parse_from_the_documents_own_tab_indented_text() -> None:
    blocks = re.findall(r"### Request:\n(?:- [^\n]*\n)?```json\n(.*?)```", _seed_text(),
                        flags=re.DOTALL)
    assert blocks
    for block in blocks:
        assert "\t" in block
        request = p.parse(block)
        assert p.event_of(request) == json.loads(block)["event"]


# --- helpers -----------------------------------------------------------------------------------
def frame(event: Any, data: Any = None, *, with_data: bool = True) -> str:
    payload: dict[str, Any] = {"event": event}
    if with_data:
        payload["data"] = data
    return json.dumps(payload)


def refusal(raw: str | bytes) -> Refusal:
    with pytest.raises(Refusal) as info:
        p.parse(raw)
    return info.value


# --- login -------------------------------------------------------------------------------------
def test_login_with_api_key_parses() -> None:
    assert p.parse(frame("login", {"apiKey": "tgws_abc"})) == p.Login(api_key="tgws_abc")


@pytest.mark.parametrize("data", [{}, {"apiKey": None}, {"apiKey": 5}, {"apiKey": ["k"]},
                                  {"api_key": "k"}])
def test_login_without_string_api_key_is_refused_under_login(data: dict[str, Any]) -> None:
    r = refusal(frame("login", data))
    assert (r.event, r.message, r.close) == ("login", "'data.apiKey' must be a string", None)


def test_login_with_overlong_api_key_is_refused() -> None:
    assert p.parse(frame("login", {"apiKey": "k" * 512})) == p.Login("k" * 512)
    r = refusal(frame("login", {"apiKey": "k" * 513}))
    assert (r.event, r.message) == ("login", "'data.apiKey' must be at most 512 characters")


def test_login_without_data_is_refused_for_missing_api_key() -> None:
    r = refusal(frame("login", with_data=False))
    assert (r.event, r.message) == ("login", "'data.apiKey' must be a string")


# --- telegram login ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"phone": "+919876543210"}, p.TelegramLogin(phone="+919876543210")),
        ({"code": "12345"}, p.TelegramLogin(code="12345")),
        ({"code": 12345}, p.TelegramLogin(code="12345")),
        ({"code": 0}, p.TelegramLogin(code="0")),
        ({"password": "hunter2"}, p.TelegramLogin(password="hunter2")),
        ({"password": ""}, p.TelegramLogin(password="")),
    ],
)
def test_telegram_login_parses_phone_code_or_password(
    data: dict[str, Any], expected: p.TelegramLogin
) -> None:
    assert p.parse(frame("telegram login", data)) == expected


def test_telegram_login_code_as_int_becomes_its_decimal_string() -> None:
    request = p.parse('{"event": "telegram login", "data": {"code": 54321}}')
    assert isinstance(request, p.TelegramLogin)
    assert request.code == "54321"
    assert request.phone is None and request.password is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"phone": "+1", "code": "1"},
        {"phone": "+1", "password": "x"},
        {"code": "1", "password": "x"},
        {"phone": "+1", "code": "1", "password": "x"},
        {"qr": True, "phone": "+1"},
        {"qr": True, "resend": True},
        {"delivery": True},
    ],
)
def test_telegram_login_with_none_or_several_fields_is_refused(data: dict[str, Any]) -> None:
    r = refusal(frame("telegram login", data))
    assert r.event == "telegram login"
    assert r.message == ("'data' must hold exactly one of 'phone', 'code', 'password', "
                         "'qr' or 'resend'")
    assert r.close is None


def test_telegram_login_qr_resend_and_the_delivery_opt_in_parse() -> None:
    assert p.parse(frame("telegram login", {"qr": True})) == p.TelegramLogin(qr=True)
    assert p.parse(frame("telegram login", {"resend": True})) == p.TelegramLogin(resend=True)
    assert p.parse(frame("telegram login", {"phone": "+1555", "delivery": True})) == \
        p.TelegramLogin(phone="+1555", delivery=True)
    assert p.parse(frame("telegram login", {"phone": "+1555"})) == p.TelegramLogin(phone="+1555")
    for bad in ({"qr": False}, {"qr": "yes"}, {"resend": 1}):
        field = next(iter(bad))
        assert refusal(frame("telegram login", bad)).message == f"'data.{field}' must be true"
    r = refusal(frame("telegram login", {"phone": "+1555", "delivery": "yes"}))
    assert r.message == "'data.delivery' must be true or false"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"phone": 919876543210}, "phone"),
        ({"phone": None}, "phone"),
        ({"code": True}, "code"),
        ({"code": 123.0}, "code"),
        ({"code": None}, "code"),
        ({"code": ["1"]}, "code"),
        ({"password": 1234}, "password"),
        ({"password": {"p": "x"}}, "password"),
    ],
)
def test_telegram_login_field_of_wrong_type_is_refused_naming_it(
    data: dict[str, Any], field: str
) -> None:
    r = refusal(frame("telegram login", data))
    assert (r.event, r.message) == ("telegram login", f"'data.{field}' must be a string")


def test_telegram_login_overlong_field_is_refused() -> None:
    r = refusal(frame("telegram login", {"password": "x" * 257}))
    assert r.message == "'data.password' must be at most 256 characters"


# --- users -------------------------------------------------------------------------------------
def test_users_group_list_parses_in_order_and_merges_a_group_named_twice() -> None:
    request = p.parse(frame("users", {"group": ["b", "a", "b"], "status": ""}))
    assert request == p.Users(groups=("b", "a"), latest=False, progress=False)
    # One group in any spelling is one group; its first spelling names it in the replies.
    request = p.parse(frame("users", {"group": ["@Group_One", "t.me/group_one", "GROUP_ONE/",
                                                "https://t.me/Group_One", "other_one"]}))
    assert request == p.Users(groups=("@Group_One", "other_one"), latest=False)


def test_chats_group_named_twice_is_one_target_and_everything_wins_over_latest() -> None:
    request = p.parse(frame("chats", {"group": [
        {"name": "news_room", "status": "latest"}, "@News_Room", {"name": "t.me/other_room"},
        {"name": "other_room", "status": "latest"}]}))
    assert request == p.Chats(groups=(p.ChatTarget("news_room", latest=False),
                                      p.ChatTarget("t.me/other_room", latest=False)))
    request = p.parse(frame("chats", {"group": ["news_room"] * 100, "status": "latest"}))
    assert request == p.Chats(groups=(p.ChatTarget("news_room", latest=True),))


@pytest.mark.parametrize("name", [
    "testgroup00001", "@testgroup00001", "t.me/testgroup00001", "https://t.me/UnderWorld4444/",
    "http://t.me/abcd", "  spaced_ok  ", "a_b_c_d"])
def test_usernames_and_links_are_usable_group_names(name: str) -> None:
    assert p.username_of(name) is not None
    assert p.unusable_group(p.Users(groups=(name,), latest=False)) is None


@pytest.mark.parametrize("name", [
    "me", "self", "SELF", "@me", "12345678", "-1001234567890", "+919876543210", "919876543210",
    "Test Group 1", "abc", "t.me/+AbCdEfGh", "t.me/joinchat/AbCdEf", "1group", "a" * 33,
    "group-name", "évian_group", "line\nbreak", "https://example.org/group"])
def test_other_names_are_refused_with_the_seeds_replies(name: str) -> None:
    assert p.username_of(name) is None
    users = p.unusable_group(p.Users(groups=("testgroup00001", name), latest=False))
    assert users is not None and users.close == CloseCode.NORMAL
    assert p.refusal_reply(users) == p.failed("users", f"{name} does not exist", group=name)
    chats = p.unusable_group(p.Chats(groups=(p.ChatTarget(name, False),)))
    assert chats is not None and chats.close == CloseCode.NORMAL
    assert p.refusal_reply(chats) == p.failed("chats", "invalid request", group=name)


def test_users_group_as_single_string_is_a_one_element_list() -> None:
    assert p.parse(frame("users", {"group": "testgroup00001"})) == p.Users(
        groups=("testgroup00001",), latest=False)


@pytest.mark.parametrize(
    ("status", "latest"),
    [("", False), ("latest", True), (None, False)],
)
def test_users_status_empty_latest_or_null(status: Any, latest: bool) -> None:
    request = p.parse(frame("users", {"group": ["g"], "status": status}))
    assert request == p.Users(groups=("g",), latest=latest)


def test_users_without_status_means_everything() -> None:
    assert p.parse(frame("users", {"group": ["g"]})) == p.Users(groups=("g",), latest=False)


@pytest.mark.parametrize("status", ["LATEST", "all", " latest", 1, 0, True, False, [], {}])
def test_users_other_status_is_refused(status: Any) -> None:
    r = refusal(frame("users", {"group": ["g"], "status": status}))
    assert (r.event, r.message) == ("users", "'data.status' must be \"\" or \"latest\"")


@pytest.mark.parametrize("group", [[], None, 5, {"name": "g"}, True])
def test_users_group_missing_empty_or_not_a_list_is_refused(group: Any) -> None:
    r = refusal(frame("users", {"group": group}))
    assert (r.event, r.message) == ("users", "'data.group' must be a non-empty list")


def test_users_without_group_is_refused() -> None:
    assert refusal(frame("users", {"status": ""})).message == (
        "'data.group' must be a non-empty list")


@pytest.mark.parametrize("entry", [5, None, ["g"], {"name": "g"}, "", "   ", "x" * 257, True])
def test_users_non_string_or_blank_group_entry_is_refused(entry: Any) -> None:
    r = refusal(frame("users", {"group": ["ok", entry]}))
    assert (r.event, r.message) == (
        "users", "'data.group[]' must be a non-empty group name (a string)")


def test_users_at_most_one_hundred_groups() -> None:
    assert len(p.parse(frame("users", {"group": [f"g{i}" for i in range(100)]})).groups) == 100  # type: ignore[union-attr]
    r = refusal(frame("users", {"group": [f"g{i}" for i in range(101)]}))
    assert r.message == "'data.group' must be a list of at most 100 groups"


def test_users_progress_flag() -> None:
    assert p.parse(frame("users", {"group": ["g"], "progress": True})) == p.Users(
        groups=("g",), latest=False, progress=True)
    r = refusal(frame("users", {"group": ["g"], "progress": "yes"}))
    assert (r.event, r.message) == ("users", "'data.progress' must be true or false")


# --- chats -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("own", "top", "latest"),
    [
        ("latest", "", True),  # the group's own status wins
        ("latest", None, True),
        ("", "latest", True),  # an empty own status falls back to the request's
        (None, "latest", True),
        ("", "", False),
        (None, None, False),
        ("latest", "latest", True),
    ],
)
def test_chats_group_status_overrides_or_falls_back_to_top_level(
    own: Any, top: Any, latest: bool
) -> None:
    request = p.parse(frame("chats", {"group": [{"name": "g", "status": own}], "status": top}))
    assert request == p.Chats(groups=(p.ChatTarget("g", latest),))


def test_chats_group_without_own_status_uses_top_level() -> None:
    request = p.parse(frame("chats", {"group": [{"name": "a"}, {"name": "b", "status": ""}],
                                      "status": "latest"}))
    assert request == p.Chats(groups=(p.ChatTarget("a", True), p.ChatTarget("b", True)))


def test_chats_groups_mix_objects_and_plain_names() -> None:
    request = p.parse(frame("chats", {"group": ["plain", {"name": "obj", "status": "latest"}],
                                      "status": ""}))
    assert request == p.Chats(groups=(p.ChatTarget("plain", False),
                                      p.ChatTarget("obj", True)))


def test_chats_group_as_single_string_uses_top_level_status() -> None:
    request = p.parse(frame("chats", {"group": "UnderWorld4444", "status": "latest"}))
    assert request == p.Chats(groups=(p.ChatTarget("UnderWorld4444", True),))


def test_chats_progress_flag() -> None:
    request = p.parse(frame("chats", {"group": ["g"], "progress": True}))
    assert request == p.Chats(groups=(p.ChatTarget("g", False),), progress=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"group": []}, "'data.group' must be a non-empty list"),
        ({}, "'data.group' must be a non-empty list"),
        ({"group": [5]}, "'data.group[]' must be an object {\"name\": …, \"status\": …}"),
        ({"group": [None]}, "'data.group[]' must be an object {\"name\": …, \"status\": …}"),
        ({"group": [["g"]]}, "'data.group[]' must be an object {\"name\": …, \"status\": …}"),
        ({"group": [{}]}, "'data.group[].name' must be a non-empty group name (a string)"),
        ({"group": [{"name": 5}]},
         "'data.group[].name' must be a non-empty group name (a string)"),
        ({"group": [{"name": ""}]},
         "'data.group[].name' must be a non-empty group name (a string)"),
        ({"group": [""]}, "'data.group[]' must be a non-empty group name (a string)"),
        ({"group": [{"name": "g", "status": "new"}]},
         "'data.group[].status' must be \"\" or \"latest\""),
        ({"group": [{"name": "g"}], "status": "old"}, "'data.status' must be \"\" or \"latest\""),
        ({"group": ["g"], "progress": 1}, "'data.progress' must be true or false"),
    ],
)
def test_chats_bad_input_is_refused_with_a_clear_message(
    data: dict[str, Any], message: str
) -> None:
    r = refusal(frame("chats", data))
    assert (r.event, r.message, r.close) == ("chats", message, None)


# --- logout, cancel ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "expected"), [("logout", p.Logout()), ("cancel", p.Cancel())],
)
def test_logout_and_cancel_parse_with_or_without_data(event: str, expected: p.Request) -> None:
    assert p.parse(frame(event, {})) == expected
    assert p.parse(frame(event, with_data=False)) == expected
    assert p.parse(frame(event, {"ignored": 1})) == expected


def test_event_of_round_trips_every_request_kind() -> None:
    samples: list[p.Request] = [
        p.Login("k"), p.TelegramLogin(phone="+1"), p.Users(("g",), False),
        p.Chats((p.ChatTarget("g", False),)), p.Logout(), p.Cancel(), p.Watch(("g",)),
        p.Ack(1),
    ]
    assert [p.event_of(s) for s in samples] == list(p.EVENTS)


# --- frames that are not requests --------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"{}", b'{"event": "login"}', bytearray(b"x"), b""])
def test_binary_frames_are_refused(raw: bytes) -> None:
    r = refusal(raw)
    assert (r.event, r.message, r.close) == ("error", p.BINARY_FRAME, None)


def test_memoryview_frame_is_refused_as_binary() -> None:
    with pytest.raises(Refusal) as info:
        p.parse(memoryview(b"{}"))  # type: ignore[arg-type]
    assert info.value.message == p.BINARY_FRAME


@pytest.mark.parametrize("raw", ["", "not json", "{", '{"event": "login",}', "{'a': 1}",
                                 "[" * 100_000, '{"a": ' + "1" * 5000 + "}"])
def test_non_json_text_is_refused_under_error(raw: str) -> None:
    r = refusal(raw)
    assert r.event == "error"
    assert r.message.startswith("invalid JSON: ")
    assert len(r.message) <= len("invalid JSON: ") + 120


@pytest.mark.parametrize("raw", ["[]", "[1, 2]", '"login"', "1", "null", "true"])
def test_json_that_is_not_an_object_is_refused(raw: str) -> None:
    r = refusal(raw)
    assert (r.event, r.message) == ("error", "a request must be a JSON object")


@pytest.mark.parametrize("raw", ["{}", '{"data": {}}', '{"event": null}', '{"event": 1}',
                                 '{"event": ["login"]}', '{"Event": "login"}'])
def test_missing_or_non_string_event_is_refused(raw: str) -> None:
    r = refusal(raw)
    assert (r.event, r.message) == ("error", "missing or non-string 'event'")


def test_unknown_event_is_refused_listing_known_events() -> None:
    r = refusal(frame("Login", {"apiKey": "k"}))
    assert r.event == "error"
    assert r.message == (
        "unknown event 'Login'; known events: 'login', 'telegram login', 'users', 'chats', "
        "'logout', 'cancel', 'watch', 'ack'"
    )


def test_unknown_event_name_is_shortened_in_the_refusal() -> None:
    r = refusal(frame("x" * 10_000))
    assert r.message.startswith("unknown event '" + "x" * 59 + "…'")
    assert len(r.message) < 200


@pytest.mark.parametrize("event", list(p.EVENTS))
@pytest.mark.parametrize("data", [None, [], "x", 1, True])
def test_data_that_is_not_an_object_is_refused_under_the_requests_event(
    event: str, data: Any
) -> None:
    r = refusal(frame(event, data))
    assert (r.event, r.message, r.close) == (event, "'data' must be a JSON object", None)


# --- replies -----------------------------------------------------------------------------------
def test_reply_is_event_then_data_with_status_then_message() -> None:
    raw = p.reply("login", "success", "send phone number")
    assert raw == (
        '{"event": "login", "data": {"status": "success", "message": "send phone number"}}')
    value = json.loads(raw)
    assert list(value) == ["event", "data"]
    assert list(value["data"]) == ["status", "message"]


def test_success_and_failed_fill_in_the_status() -> None:
    assert p.success("users", "sending users") == (
        '{"event": "users", "data": {"status": "success", "message": "sending users"}}')
    assert p.failed("chats", "invalid request") == (
        '{"event": "chats", "data": {"status": "failed", "message": "invalid request"}}')


def test_reply_keeps_quotes_and_non_ascii_text_as_is() -> None:
    raw = p.failed("telegram login", p.SESSION_EXISTS_TELEGRAM)
    assert raw == ('{"event": "telegram login", "data": {"status": "failed", '
                   '"message": "session alreay exists, call \'users\'"}}')
    assert p.success("users", "Grüße…") == (
        '{"event": "users", "data": {"status": "success", "message": "Grüße…"}}')


def test_reply_extra_fields_come_after_message() -> None:
    raw = p.success("users", "done", complete=True, count=3)
    assert raw == ('{"event": "users", "data": {"status": "success", "message": "done", '
                   '"complete": true, "count": 3}}')


def test_reply_with_object_message_keeps_its_key_order() -> None:
    raw = p.success("users", {"group": "g", "user": {"id": "1"}})
    assert raw == ('{"event": "users", "data": {"status": "success", '
                   '"message": {"group": "g", "user": {"id": "1"}}}}')


def test_refusal_reply_is_a_failed_reply_under_the_refusals_event() -> None:
    r = refusal(frame("users", {"group": []}))
    assert p.refusal_reply(r) == (
        '{"event": "users", "data": {"status": "failed", '
        '"message": "\'data.group\' must be a non-empty list"}}')


# --- lone surrogates: valid JSON escapes that are not valid UTF-8 ------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        '{"event": "users", "data": {"group": ["\\ud800"]}}',
        '{"event": "login", "data": {"apiKey": "\\udfff"}}',
        '{"event": "telegram login", "data": {"phone": "+1\\ud83d"}}',
        '{"event": "chats", "data": {"group": [{"name": "\\udc00x"}]}}',
    ],
)
def test_lone_surrogate_in_a_string_field_is_refused(raw: str) -> None:
    refusal(raw)


# --- properties --------------------------------------------------------------------------------
CHARACTERS = st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(CHARACTERS, max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(CHARACTERS, max_size=10), children, max_size=5),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(["apiKey", "phone", "code", "password", "group", "status",
                               "progress", "name"]) | st.text(max_size=8)
DATA = JSON_VALUES | st.dictionaries(
    FIELD_NAMES,
    JSON_VALUES | st.lists(st.fixed_dictionaries({"name": JSON_VALUES, "status": JSON_VALUES}),
                           max_size=3),
    max_size=4,
)
EVENT = st.sampled_from(list(p.EVENTS)) | st.sampled_from(["error", "Login", ""]) | JSON_VALUES


def assert_request_is_well_formed(request: p.Request) -> None:
    assert p.event_of(request) in p.EVENTS
    if isinstance(request, p.Login):
        assert isinstance(request.api_key, str)
    elif isinstance(request, p.TelegramLogin):
        fields = [request.phone, request.code, request.password]
        assert sum(f is not None for f in fields) == 1
        assert all(f is None or isinstance(f, str) for f in fields)
    elif isinstance(request, p.Users):
        assert request.groups and all(isinstance(g, str) and g.strip() for g in request.groups)
        assert isinstance(request.latest, bool) and isinstance(request.progress, bool)
    elif isinstance(request, p.Chats):
        assert request.groups
        for target in request.groups:
            assert isinstance(target.name, str) and target.name.strip()
            assert isinstance(target.latest, bool)


def assert_refusal_reply_is_well_formed(refusal: Refusal) -> None:
    raw = p.refusal_reply(refusal)
    raw.encode("utf-8")  # a websocket text frame must be valid UTF-8
    value = json.loads(raw)
    assert list(value) == ["event", "data"]
    assert value["event"] == refusal.event
    assert value["event"] == "error" or value["event"] in p.EVENTS
    assert list(value["data"]) == ["status", "message"]
    assert value["data"]["status"] == "failed"
    message = value["data"]["message"]
    assert isinstance(message, str) and message
    assert refusal.close is None


def parse_or_refuse(raw: str | bytes) -> None:
    try:
        request = p.parse(raw)
    except Refusal as r:
        assert_refusal_reply_is_well_formed(r)
    else:
        assert_request_is_well_formed(request)


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.text(CHARACTERS))
def test_parse_of_arbitrary_text_returns_a_request_or_raises_refusal(raw: str) -> None:
    parse_or_refuse(raw)


@FAST
@given(st.binary())
def test_parse_of_arbitrary_bytes_is_refused_as_binary(raw: bytes) -> None:
    with pytest.raises(Refusal) as info:
        p.parse(raw)
    assert info.value.message == p.BINARY_FRAME
    assert_refusal_reply_is_well_formed(info.value)


@FAST
@given(JSON_VALUES)
def test_parse_of_arbitrary_json_returns_a_request_or_raises_refusal(value: Any) -> None:
    parse_or_refuse(json.dumps(value))


@FAST
@given(EVENT, DATA, st.booleans())
def test_parse_of_random_event_and_data_returns_a_request_or_raises_refusal(
    event: Any, data: Any, ensure_ascii: bool
) -> None:
    parse_or_refuse(json.dumps({"event": event, "data": data}, ensure_ascii=ensure_ascii))


@FAST
@given(st.sampled_from([p.SUCCESS, p.FAILED, p.PROGRESS]), st.text(), st.text(), JSON_VALUES)
def test_reply_always_has_the_protocols_shape(
    status: str, event: str, message: str, extra: Any
) -> None:
    raw = p.reply(event, status, message, extra=extra)
    value = json.loads(raw)
    assert value == {"event": event, "data": {"status": status, "message": message,
                                              "extra": extra}}
    assert list(value["data"]) == ["status", "message", "extra"]
