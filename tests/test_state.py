"""tgws.state: every phase against every request kind, every transition, and random runs.

The expected answers are written out here independently of tgws.state (EXPECTED below), so a
change to the machine's rules shows up as a failing row rather than passing by construction.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tgws import protocol as p
from tgws.errors import CloseCode, Refusal
from tgws.state import Canned, ConnectionState, Outcome, Phase

NEW, VERIFIED, CODE_SENT, PASSWORD_NEEDED, LOGGED_IN = (
    Phase.NEW, Phase.VERIFIED, Phase.CODE_SENT, Phase.PASSWORD_NEEDED, Phase.LOGGED_IN,
)

REQUESTS: dict[str, p.Request] = {
    "login": p.Login(api_key="tgws_key"),
    "phone": p.TelegramLogin(phone="+919876543210"),
    "code": p.TelegramLogin(code="12345"),
    "password": p.TelegramLogin(password="hunter2"),
    "qr": p.TelegramLogin(qr=True),
    "resend": p.TelegramLogin(resend=True),
    "users": p.Users(groups=("testgroup00001",), latest=False),
    "chats": p.Chats(groups=(p.ChatTarget("UnderWorld4444", latest=True),)),
    "logout": p.Logout(),
    "cancel": p.Cancel(),
}

ALLOW = None
TL = p.TELEGRAM_LOGIN


def refuse(event: str, message: str, close: CloseCode | None = None) -> tuple[Any, ...]:
    return ("refuse", event, message, close)


def canned(event: str, message: str) -> Canned:
    return Canned(event, message)


ALREADY = canned("login", p.ALREADY_VERIFIED)
SESSION_EXISTS = canned(TL, p.SESSION_EXISTS_TELEGRAM)
NOTHING_TO_CANCEL = refuse("cancel", p.NOTHING_TO_CANCEL)

# (phase, streaming) -> request name -> expected answer of check().
EXPECTED: dict[tuple[Phase, bool], dict[str, Any]] = {
    (NEW, False): {
        "login": ALLOW,
        "phone": refuse(TL, p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "code": refuse(TL, p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "password": refuse(TL, p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "qr": refuse(TL, p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "resend": refuse(TL, p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "users": refuse("users", p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "chats": refuse("chats", p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "logout": refuse("logout", p.VERIFY_API_KEY_FIRST, CloseCode.NORMAL),
        "cancel": NOTHING_TO_CANCEL,
    },
    (VERIFIED, False): {
        "login": ALREADY,
        "phone": ALLOW,
        "code": refuse(TL, p.SEND_PHONE_FIRST),
        "password": refuse(TL, p.NOT_EXPECTING_PASSWORD),
        "qr": ALLOW,
        "resend": refuse(TL, p.SEND_PHONE_FIRST),
        "users": refuse("users", p.TELEGRAM_LOGIN_FIRST),
        "chats": refuse("chats", p.TELEGRAM_LOGIN_FIRST),
        "logout": ALLOW,
        "cancel": NOTHING_TO_CANCEL,
    },
    (CODE_SENT, False): {
        "login": ALREADY,
        "phone": refuse(TL, p.CODE_PENDING),
        "code": ALLOW,
        "password": refuse(TL, p.NOT_EXPECTING_PASSWORD),
        "qr": refuse(TL, p.CODE_PENDING),
        "resend": ALLOW,
        "users": refuse("users", p.TELEGRAM_LOGIN_FIRST),
        "chats": refuse("chats", p.TELEGRAM_LOGIN_FIRST),
        "logout": ALLOW,
        "cancel": NOTHING_TO_CANCEL,
    },
    (PASSWORD_NEEDED, False): {
        "login": ALREADY,
        "phone": refuse(TL, p.PASSWORD_PENDING),
        "code": refuse(TL, p.PASSWORD_PENDING),
        "password": ALLOW,
        "qr": refuse(TL, p.PASSWORD_PENDING),
        "resend": refuse(TL, p.PASSWORD_PENDING),
        "users": refuse("users", p.TELEGRAM_LOGIN_FIRST),
        "chats": refuse("chats", p.TELEGRAM_LOGIN_FIRST),
        "logout": ALLOW,
        "cancel": NOTHING_TO_CANCEL,
    },
    (LOGGED_IN, False): {
        "login": ALREADY,
        "phone": SESSION_EXISTS,
        "code": SESSION_EXISTS,
        "password": SESSION_EXISTS,
        "qr": SESSION_EXISTS,
        "resend": SESSION_EXISTS,
        "users": ALLOW,
        "chats": ALLOW,
        "logout": ALLOW,
        "cancel": NOTHING_TO_CANCEL,
    },
    (LOGGED_IN, True): {
        "login": ALREADY,
        "phone": SESSION_EXISTS,
        "code": SESSION_EXISTS,
        "password": SESSION_EXISTS,
        "qr": SESSION_EXISTS,
        "resend": SESSION_EXISTS,
        "users": refuse("users", p.STREAM_IN_PROGRESS),
        "chats": refuse("chats", p.STREAM_IN_PROGRESS),
        "logout": refuse("logout", p.STREAM_IN_PROGRESS),
        "cancel": ALLOW,
    },
}

EXPECTED_TRANSITIONS: dict[tuple[Phase, Outcome], Phase] = {
    (NEW, Outcome.KEY_ACCEPTED): VERIFIED,
    (NEW, Outcome.KEY_ACCEPTED_WITH_SESSION): LOGGED_IN,
    (VERIFIED, Outcome.CODE_SENT): CODE_SENT,
    (VERIFIED, Outcome.SIGNED_IN): LOGGED_IN,
    (VERIFIED, Outcome.LOGGED_OUT): VERIFIED,
    (CODE_SENT, Outcome.SIGNED_IN): LOGGED_IN,
    (CODE_SENT, Outcome.PASSWORD_NEEDED): PASSWORD_NEEDED,
    (CODE_SENT, Outcome.CODE_RESENT): CODE_SENT,
    (VERIFIED, Outcome.PASSWORD_NEEDED): PASSWORD_NEEDED,  # a QR login of a 2FA account
    (CODE_SENT, Outcome.LOGGED_OUT): VERIFIED,
    (PASSWORD_NEEDED, Outcome.SIGNED_IN): LOGGED_IN,
    (PASSWORD_NEEDED, Outcome.LOGGED_OUT): VERIFIED,
    (LOGGED_IN, Outcome.LOGGED_OUT): VERIFIED,
}


# How a connection gets to each phase, as the seed's login flows go (no look at tgws.state's
# own table: the machine is driven only through advance()).
PATH_TO: dict[Phase, list[Outcome]] = {
    NEW: [],
    VERIFIED: [Outcome.KEY_ACCEPTED],
    CODE_SENT: [Outcome.KEY_ACCEPTED, Outcome.CODE_SENT],
    PASSWORD_NEEDED: [Outcome.KEY_ACCEPTED, Outcome.CODE_SENT, Outcome.PASSWORD_NEEDED],
    LOGGED_IN: [Outcome.KEY_ACCEPTED_WITH_SESSION],
}


def machine_in(phase: Phase, *, streaming: bool = False) -> ConnectionState:
    state = ConnectionState()
    for outcome in PATH_TO[phase]:
        state.advance(outcome)
    assert state.phase is phase
    state.streaming = streaming
    return state


def reachable_by_advancing() -> tuple[set[Phase], dict[tuple[Phase, Outcome], Phase]]:
    """Explore the machine through advance() alone, breadth-first from a fresh connection:
    the phases it can reach, and every (phase, outcome) it accepts with where it leads."""
    paths: dict[Phase, list[Outcome]] = {NEW: []}
    accepted: dict[tuple[Phase, Outcome], Phase] = {}
    queue: deque[Phase] = deque([NEW])
    while queue:
        here = queue.popleft()
        for outcome in Outcome:
            state = ConnectionState()
            for step in paths[here]:
                state.advance(step)
            try:
                target = state.advance(outcome)
            except RuntimeError:
                continue
            accepted[(here, outcome)] = target
            if target not in paths:
                paths[target] = [*paths[here], outcome]
                queue.append(target)
    return set(paths), accepted


def answer(state: ConnectionState, request: p.Request) -> Any:
    """check()'s answer in EXPECTED's terms; anything but None/Canned/Refusal fails."""
    try:
        result = state.check(request)
    except Refusal as r:
        return refuse(r.event, r.message, r.close)
    assert result is None or isinstance(result, Canned), result
    return result


# --- the check() table ---------------------------------------------------------------------------
CASES = [
    pytest.param(phase, streaming, name, expected,
                 id=f"{phase.name}-{'streaming-' * streaming}{name}")
    for (phase, streaming), row in EXPECTED.items()
    for name, expected in row.items()
]


def test_expected_table_covers_every_phase_and_request_kind() -> None:
    assert {phase for phase, _ in EXPECTED} == set(Phase)
    assert all(set(row) == set(REQUESTS) for row in EXPECTED.values())
    assert {type(r) for r in REQUESTS.values()} == {
        p.Login, p.TelegramLogin, p.Users, p.Chats, p.Logout, p.Cancel}


@pytest.mark.parametrize(("phase", "streaming", "name", "expected"), CASES)
def test_check_answers_every_request_in_every_phase(
    phase: Phase, streaming: bool, name: str, expected: Any
) -> None:
    state = machine_in(phase, streaming=streaming)
    assert answer(state, REQUESTS[name]) == expected
    # check() decides; it never moves the machine.
    assert (state.phase, state.streaming) == (phase, streaming)


@pytest.mark.parametrize("name", ["phone", "code", "password", "users", "chats", "logout"])
def test_request_before_login_is_refused_with_verify_api_key_first_and_closes(name: str) -> None:
    with pytest.raises(Refusal) as info:
        ConnectionState().check(REQUESTS[name])
    assert info.value.message == "verify your api key first"
    assert info.value.close is CloseCode.NORMAL
    assert info.value.event == p.event_of(REQUESTS[name])


def test_telegram_login_before_login_closes_socket() -> None:
    with pytest.raises(Refusal) as info:
        ConnectionState().check(p.TelegramLogin(phone="+1"))
    assert p.refusal_reply(info.value) == (
        '{"event": "telegram login", "data": {"status": "failed", '
        '"message": "verify your api key first"}}')
    assert info.value.close == 1000


def test_login_twice_answers_already_verified() -> None:
    state = ConnectionState()
    assert state.check(REQUESTS["login"]) is None
    state.advance(Outcome.KEY_ACCEPTED)
    assert state.check(REQUESTS["login"]) == Canned(
        "login", "Already verified. Send data to 'telegram login' or 'users'.")


def test_login_with_existing_session_goes_straight_to_logged_in() -> None:
    state = ConnectionState()
    assert state.advance(Outcome.KEY_ACCEPTED_WITH_SESSION) is LOGGED_IN
    assert state.verified
    assert state.check(REQUESTS["users"]) is None


@pytest.mark.parametrize("name", ["phone", "code", "password"])
def test_telegram_login_when_logged_in_answers_session_alreay_exists(name: str) -> None:
    result = machine_in(LOGGED_IN).check(REQUESTS[name])
    assert result == Canned("telegram login", "session alreay exists, call 'users'")


def test_code_before_phone_is_refused_without_closing() -> None:
    with pytest.raises(Refusal) as info:
        machine_in(VERIFIED).check(REQUESTS["code"])
    assert (info.value.message, info.value.close) == (p.SEND_PHONE_FIRST, None)


def test_phone_while_code_pending_is_refused_without_closing() -> None:
    with pytest.raises(Refusal) as info:
        machine_in(CODE_SENT).check(REQUESTS["phone"])
    assert (info.value.message, info.value.close) == (p.CODE_PENDING, None)


@pytest.mark.parametrize("phase", [VERIFIED, CODE_SENT])
def test_password_when_not_asked_is_refused_without_closing(phase: Phase) -> None:
    with pytest.raises(Refusal) as info:
        machine_in(phase).check(REQUESTS["password"])
    assert (info.value.message, info.value.close) == (p.NOT_EXPECTING_PASSWORD, None)


@pytest.mark.parametrize("phase", [VERIFIED, CODE_SENT, PASSWORD_NEEDED])
@pytest.mark.parametrize("name", ["users", "chats"])
def test_users_and_chats_before_telegram_login_are_refused_without_closing(
    phase: Phase, name: str
) -> None:
    with pytest.raises(Refusal) as info:
        machine_in(phase).check(REQUESTS[name])
    assert (info.value.event, info.value.message, info.value.close) == (
        name, p.TELEGRAM_LOGIN_FIRST, None)


@pytest.mark.parametrize("name", ["users", "chats"])
def test_second_stream_while_streaming_is_refused(name: str) -> None:
    with pytest.raises(Refusal) as info:
        machine_in(LOGGED_IN, streaming=True).check(REQUESTS[name])
    assert (info.value.message, info.value.close) == (p.STREAM_IN_PROGRESS, None)


@pytest.mark.parametrize("phase", list(Phase))
def test_cancel_without_stream_is_refused_without_closing(phase: Phase) -> None:
    with pytest.raises(Refusal) as info:
        machine_in(phase).check(REQUESTS["cancel"])
    assert (info.value.event, info.value.message, info.value.close) == (
        "cancel", p.NOTHING_TO_CANCEL, None)


def test_cancel_while_streaming_is_allowed() -> None:
    assert machine_in(LOGGED_IN, streaming=True).check(REQUESTS["cancel"]) is None


def test_only_the_seeds_verify_first_refusal_closes_the_socket() -> None:
    # Asked of the machine itself, not of EXPECTED: every state against every request.
    answers = {
        (phase, streaming, name): answer(machine_in(phase, streaming=streaming), request)
        for phase, streaming in EXPECTED
        for name, request in REQUESTS.items()
    }
    closing = {where for where, result in answers.items()
               if isinstance(result, tuple) and result[3] is not None}
    assert closing == {(NEW, False, n) for n in
                       ("phone", "code", "password", "qr", "resend", "users", "chats",
                        "logout")}
    assert {answers[where][2] for where in closing} == {p.VERIFY_API_KEY_FIRST}


# --- transitions ---------------------------------------------------------------------------------
# What a handler reports after each request it was allowed to run, and where that leads.
HANDLER_OUTCOMES: list[tuple[Phase, str, Outcome, Phase]] = [
    (NEW, "login", Outcome.KEY_ACCEPTED, VERIFIED),
    (NEW, "login", Outcome.KEY_ACCEPTED_WITH_SESSION, LOGGED_IN),
    (VERIFIED, "phone", Outcome.CODE_SENT, CODE_SENT),
    # Another connection of the same key signed in meanwhile: the store says so.
    (VERIFIED, "phone", Outcome.SIGNED_IN, LOGGED_IN),
    (CODE_SENT, "code", Outcome.SIGNED_IN, LOGGED_IN),
    (CODE_SENT, "code", Outcome.PASSWORD_NEEDED, PASSWORD_NEEDED),
    (PASSWORD_NEEDED, "password", Outcome.SIGNED_IN, LOGGED_IN),
    (VERIFIED, "logout", Outcome.LOGGED_OUT, VERIFIED),
    (CODE_SENT, "logout", Outcome.LOGGED_OUT, VERIFIED),
    (PASSWORD_NEEDED, "logout", Outcome.LOGGED_OUT, VERIFIED),
    (LOGGED_IN, "logout", Outcome.LOGGED_OUT, VERIFIED),
]


@pytest.mark.parametrize(("phase", "name", "outcome", "target"), HANDLER_OUTCOMES,
                         ids=[f"{ph.name}-{n}-{o.name}" for ph, n, o, _ in HANDLER_OUTCOMES])
def test_each_allowed_request_leads_where_its_outcome_says(
    phase: Phase, name: str, outcome: Outcome, target: Phase
) -> None:
    state = machine_in(phase)
    assert state.check(REQUESTS[name]) is None, "the request is allowed in this phase"
    assert state.advance(outcome) is target
    assert (state.phase, state.verified) == (target, True)


def test_exploring_through_advance_reaches_every_phase_and_only_the_expected_moves() -> None:
    phases, accepted = reachable_by_advancing()
    assert phases == set(Phase)
    assert accepted == EXPECTED_TRANSITIONS


@pytest.mark.parametrize("streaming", [False, True])
def test_an_illegal_transition_raises_naming_it_and_changes_nothing(streaming: bool) -> None:
    state = machine_in(LOGGED_IN, streaming=streaming)
    with pytest.raises(RuntimeError, match=r"no transition from .*LOGGED_IN.* on .*CODE_SENT"):
        state.advance(Outcome.CODE_SENT)
    assert (state.phase, state.streaming) == (LOGGED_IN, streaming)
    # The machine still works after the refused move.
    assert state.advance(Outcome.LOGGED_OUT) is VERIFIED


def test_a_second_login_cannot_move_a_verified_connection() -> None:
    for phase in (VERIFIED, CODE_SENT, PASSWORD_NEEDED, LOGGED_IN):
        for outcome in (Outcome.KEY_ACCEPTED, Outcome.KEY_ACCEPTED_WITH_SESSION):
            state = machine_in(phase)
            with pytest.raises(RuntimeError):
                state.advance(outcome)
            assert state.phase is phase


@pytest.mark.parametrize(
    ("phase", "outcome"),
    list(itertools.product(Phase, Outcome)),
    ids=lambda v: v.name,
)
def test_advance_follows_the_table_or_raises_leaving_the_phase(
    phase: Phase, outcome: Outcome
) -> None:
    state = machine_in(phase)
    target = EXPECTED_TRANSITIONS.get((phase, outcome))
    if target is None:
        with pytest.raises(RuntimeError, match="no transition"):
            state.advance(outcome)
        assert state.phase is phase
    else:
        assert state.advance(outcome) is target
        assert state.phase is target


def test_every_phase_is_reachable_from_new() -> None:
    for phase in Phase:
        assert machine_in(phase).phase is phase


def test_nothing_leads_back_to_new() -> None:
    for phase, outcome in itertools.product(Phase, Outcome):
        state = machine_in(phase)
        try:
            target = state.advance(outcome)
        except RuntimeError:
            continue
        assert target is not NEW, (phase, outcome)


def test_verified_is_false_only_in_new() -> None:
    assert [machine_in(phase).verified for phase in Phase] == [
        phase is not NEW for phase in Phase]


def test_full_login_with_two_step_verification() -> None:
    state = ConnectionState()
    steps: list[tuple[str, Outcome]] = [
        ("login", Outcome.KEY_ACCEPTED),
        ("phone", Outcome.CODE_SENT),
        ("code", Outcome.PASSWORD_NEEDED),
        ("password", Outcome.SIGNED_IN),
    ]
    for name, outcome in steps:
        assert state.check(REQUESTS[name]) is None
        state.advance(outcome)
    assert state.phase is LOGGED_IN
    assert state.check(REQUESTS["users"]) is None
    assert state.check(REQUESTS["logout"]) is None
    assert state.advance(Outcome.LOGGED_OUT) is VERIFIED
    assert state.check(REQUESTS["phone"]) is None


# --- random runs ---------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(REQUESTS)) | st.sampled_from(list(Outcome)),
                max_size=30))
def test_random_sequences_keep_the_machine_in_a_defined_phase(steps: list[Any]) -> None:
    state = ConnectionState()
    for step in steps:
        before = (state.phase, state.streaming)
        if isinstance(step, Outcome):
            target = EXPECTED_TRANSITIONS.get((state.phase, step))
            if target is None:
                with pytest.raises(RuntimeError):
                    state.advance(step)
                assert (state.phase, state.streaming) == before
            else:
                assert state.advance(step) is target
        else:
            result = answer(state, REQUESTS[step])
            key = (state.phase, state.streaming)
            assert result == EXPECTED[key][step]
            assert (state.phase, state.streaming) == before
        assert isinstance(state.phase, Phase)


class ConnectionMachine(RuleBasedStateMachine):
    """A handler's-eye view: check first, advance only after an allowed request, run streams."""

    def __init__(self) -> None:
        super().__init__()
        self.state = ConnectionState()

    @rule(name=st.sampled_from(list(REQUESTS)), outcome=st.sampled_from(list(Outcome)))
    def request_then_outcome(self, name: str, outcome: Outcome) -> None:
        request = REQUESTS[name]
        try:
            result = self.state.check(request)
        except Refusal as r:
            assert r.close in (None, CloseCode.NORMAL)
            assert r.close is None or self.state.phase is NEW
            assert r.event == p.event_of(request)
            return
        assert result is None or isinstance(result, Canned)
        if result is not None:
            return
        if isinstance(request, p.Users | p.Chats):
            self.state.streaming = True
            return
        if isinstance(request, p.Cancel):
            self.state.streaming = False
            return
        target = EXPECTED_TRANSITIONS.get((self.state.phase, outcome))
        if target is not None:
            assert self.state.advance(outcome) is target
        else:
            with pytest.raises(RuntimeError):
                self.state.advance(outcome)

    @precondition(lambda self: self.state.streaming)
    @rule()
    def stream_finishes(self) -> None:
        self.state.streaming = False

    @rule()
    def session_lost_elsewhere(self) -> None:
        if (self.state.phase, Outcome.LOGGED_OUT) in EXPECTED_TRANSITIONS:
            assert self.state.advance(Outcome.LOGGED_OUT) is VERIFIED
            self.state.streaming = False

    @invariant()
    def phase_is_defined(self) -> None:
        assert self.state.phase in set(Phase)
        assert self.state.verified is (self.state.phase is not NEW)

    @invariant()
    def streams_run_only_when_logged_in(self) -> None:
        assert not self.state.streaming or self.state.phase is LOGGED_IN

    @invariant()
    def check_agrees_with_the_expected_table(self) -> None:
        row = EXPECTED[(self.state.phase, self.state.streaming)]
        for name, expected in row.items():
            assert answer(self.state, REQUESTS[name]) == expected


ConnectionMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None)
TestConnectionStateUnderRandomUse = ConnectionMachine.TestCase
