"""The `tgws client` command line: options, actions, help text and exit codes."""

from __future__ import annotations

import argparse
from typing import Any, Final

from tgws import protocol as p

DEFAULT_URL: Final = "ws://127.0.0.1:8000/ws/telegram/"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # a failed reply, an unexpected reply, or no input for a prompt
EXIT_USAGE: Final = 2  # as argparse
EXIT_CONNECTION: Final = 3  # could not connect, or the connection was lost

EPILOG: Final = f"""\
output:
  users and chats print one JSON object per line on stdout: the user or message object
  the server sent, with a "group" key added (first) naming the group it came from, e.g.
    {{"group":"testgroup00001","id":5000001,"username":"...","first_name":"...",...}}
  so `| jq -r .username` or `| jq 'select(.group=="x")'` work without unwrapping.
  ("group" is always the requested group; it replaces a "group" field of the object.)
  Everything else (progress, flood-wait notices, the summary, errors) goes to stderr.

login:
  `login` asks for the phone number, the code and, for accounts with two-step
  verification, the password (read without echo). When standard input is not a
  terminal, or with --phone, the code (and then the password, if asked for) are read
  as lines from standard input:  printf '12345\\n' | tgws client login --phone +91...
  If the server already holds a Telegram session for the API key, login says so and
  exits 0. `login --qr` draws a QR code on stderr instead (its tg://login URL below it);
  scan it with the Telegram app; then the password is asked for if the account has one.

environment:
  TGWS_URL        default for --url ({DEFAULT_URL})
  TGWS_API_KEY    default for --api-key

exit codes:
  0  done (or login/logout succeeded, or the reader of stdout went away, e.g. | head)
  1  the server replied "failed" (its message is printed), or replied unexpectedly
  2  usage error
  3  could not connect, or the connection was lost before the reply or "done"
  130 interrupted (Ctrl-C)
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fill in the `client` subparser of `tgws`."""
    parser.description = ("Talk to a tgws server: log in to Telegram, stream group members "
                          "or messages as JSON lines, log out.")
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _add_common(parser, suppress=False)
    # The common options are accepted after the action too (`... users g --api-key K`).
    # SUPPRESS keeps a sub-parser from overwriting a value given before the action.
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)

    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, kind, what in ((p.USERS, "members", "groups"),
                             (p.CHATS, "messages", "groups or channels")):
        sub = actions.add_parser(
            name, parents=[common], help=f"stream the {kind} of {what} as JSON lines",
            description=f"Stream the {kind} of one or more {what}, one JSON line each.",
            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("groups", nargs="+", metavar="GROUP",
                         help="group username (e.g. testgroup00001)")
        sub.add_argument("--latest", action="store_true",
                         help="only what is new since this API key's last stream "
                              "(status \"latest\")")
        sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="ask the server for progress reports (default: on when "
                              "stderr is a terminal and stdout is not)")
    login = actions.add_parser(
        "login", parents=[common], help="log the API key's account in to Telegram",
        description="Log the API key's account in to Telegram (phone, code, 2FA password).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    how = login.add_mutually_exclusive_group()
    how.add_argument("--phone", metavar="PHONE",
                     help="phone number in international format (e.g. +919876543210); "
                          "then the code and password are read from standard input lines")
    how.add_argument("--qr", action="store_true",
                     help="log in by scanning a QR code with a Telegram app where the account "
                          "is logged in (Settings > Devices > Link Desktop Device); the code "
                          "is drawn on stderr and redrawn each time Telegram renews it")
    live = actions.add_parser(
        p.WATCH, parents=[common], help="print new messages (and more) as they happen",
        description="Watch groups: first what is new since this API key's last stream, then "
                    "every new message as it happens, one JSON line each (with \"kind\" and "
                    "\"path\"), until Ctrl-C.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    live.add_argument("groups", nargs="+", metavar="GROUP",
                      help="group or channel username (e.g. testgroup00001)")
    live.add_argument("--edits", action="store_true", help="also print edits")
    live.add_argument("--deletions", action="store_true", help="also print deletions")
    live.add_argument("--members", action="store_true",
                      help="also print members joining and leaving (groups only)")
    live.add_argument("--ack", action="store_true",
                      help="ask for client acks: each item is acked only after its line "
                           "was flushed to stdout, so nothing the server commits is lost")
    actions.add_parser("logout", parents=[common], help="end the Telegram session of the key",
                       description="Log the API key's Telegram session out.")


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--url", default=default(None), metavar="URL",
                        help=f"server websocket URL (default: $TGWS_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", default=default(None), metavar="KEY",
                        help="API key (default: $TGWS_API_KEY)")
    parser.add_argument("--transcript", action="store_true", default=default(False),
                        help="print every frame sent (> ...) and received (< ...) on stderr; "
                             "the API key and password are masked")
    parser.add_argument("-q", "--quiet", action="store_true", default=default(False),
                        help="no summary or progress on stderr, only errors")
