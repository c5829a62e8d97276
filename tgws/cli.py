"""The `tgws` command: serve, demo, client, apikey, check-config, sandbox serve.

This is the one place that turns a ConfigError into a single stderr line and exit code 2
(systemd's RestartPreventExitStatus=2 keeps a bad config from restart-looping). Other
start-up failures (store unusable, port taken) are one line and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tgws import __version__
from tgws import config as config_mod
from tgws.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from tgws.config import StoreConfig
    from tgws.sealing import Keyring

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _add_config_flags(parser: argparse.ArgumentParser, *, server: bool = True,
                      nested: bool = False) -> None:
    """The config flags. `nested`: the same flags on an action (`apikey create NAME
    --config F`), with SUPPRESS defaults so that an action which does not repeat a flag
    keeps what was given before the action (argparse lets a subparser's defaults win)."""
    extra: dict[str, Any] = {"default": argparse.SUPPRESS} if nested else {}
    parser.add_argument("--config", "-c", metavar="FILE", **extra,
                        help="TOML config file (default: $TGWS_CONFIG, else built-in defaults)")
    parser.add_argument("--db", metavar="FILE", **extra, help="sqlite store path (store.path)")
    parser.add_argument("--log-level", choices=config_mod.LOG_LEVELS, **extra, help="log.level")
    if server:
        parser.add_argument("--host", **extra, help="listen address (server.host)")
        parser.add_argument("--port", type=int, metavar="N", **extra,
                            help="listen port (server.port)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgws", description="Drive a Telegram user account over a plain websocket.")
    parser.add_argument("--version", action="version", version=f"tgws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon")
    _add_config_flags(serve)
    serve.add_argument("--sandbox", action="store_true",
                       help="use the in-process sandbox Telegram (telegram.backend = sandbox)")

    demo = sub.add_parser("demo", help="run the daemon on the sandbox Telegram, no account needed")
    _add_config_flags(demo)
    demo.add_argument("--tick", type=float, default=2.0, metavar="SECONDS",
                      help="every tick new messages land (and every 5th a member joins); "
                           "0 stops the world (default 2)")
    demo.add_argument("--hostile", action="store_true",
                      help="serve the hostile world: holes, churn, five DCs, faults "
                           "(sandbox.hostile; docs/sandbox.md)")
    demo.add_argument("--seed", type=int, metavar="N",
                      help="seed of the world and its faults (sandbox.seed, default 0)")
    demo.add_argument("--sandbox-url", metavar="tcp://HOST:PORT",
                      help="use the shared sandbox of `tgws sandbox serve` (sandbox.url)")

    sandbox = sub.add_parser("sandbox", help="one sandbox Telegram for several daemons")
    sandbox_actions = sandbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    sandbox_serve = sandbox_actions.add_parser(
        "serve", help="serve a sandbox world on a loopback port ([sandbox] url reaches it)")
    sandbox_serve.add_argument("--config", "-c", metavar="FILE",
                               help="TOML config whose [sandbox] keys describe the world")
    sandbox_serve.add_argument("--port", type=int, default=0, metavar="N", dest="sandbox_port",
                               help="port on 127.0.0.1 (default 0: any free one, printed)")
    sandbox_serve.add_argument("--seed", type=int, metavar="N", help="sandbox.seed")
    sandbox_serve.add_argument("--hostile", action="store_true", help="sandbox.hostile")
    sandbox_serve.add_argument("--tick", type=float, metavar="SECONDS",
                               help="sandbox.tick: the world moves every SECONDS (0 = never)")
    sandbox_serve.add_argument("--idle-timeout", type=float, default=10.0, metavar="SECONDS",
                               help="close a connection silent this long (default 10)")

    client = sub.add_parser("client", help="command-line client for any tgws server")
    from tgws.client import add_arguments as add_client_arguments
    add_client_arguments(client)

    apikey = sub.add_parser("apikey", help="create, list or revoke API keys")
    _add_config_flags(apikey, server=False)
    keys = apikey.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = keys.add_parser("create", help="create a key; prints it once, on the last line")
    create.add_argument("name")
    _add_config_flags(create, server=False, nested=True)
    listing = keys.add_parser("list", help="names, creation and last-use times (never the keys)")
    _add_config_flags(listing, server=False, nested=True)
    revoke = keys.add_parser("revoke", help="revoke a key; its connections are closed")
    revoke.add_argument("name")
    _add_config_flags(revoke, server=False, nested=True)

    secret = sub.add_parser("secret-key",
                            help="keys that encrypt stored Telegram sessions ([store] "
                                 "secret_key_file)")
    _add_config_flags(secret, server=False)  # for reseal, before or after the action
    secret_actions = secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("create", "write a new key file (mode 0600; never over a file)"),
                         ("rotate", "put a new key first in FILE; old keys still decrypt"),
                         ("prune", "keep only the first key in FILE (run reseal first)")):
        secret_actions.add_parser(action, help=text).add_argument("file")
    reseal = secret_actions.add_parser(
        "reseal", help="re-encrypt every stored session with the first key of "
                       "[store] secret_key_file")
    _add_config_flags(reseal, server=False, nested=True)

    check = sub.add_parser("check-config", help="validate a config and print the settings")
    _add_config_flags(check)
    return parser


# Command-line flags and the config key each one sets; config.load names the flag when
# its value is the one refused.
FLAGS: dict[str, str] = {
    "store.path": "--db",
    "log.level": "--log-level",
    "server.host": "--host",
    "server.port": "--port",
}


def load_config(args: argparse.Namespace, **extra: Any) -> config_mod.Config:
    overrides: dict[str, Any] = {
        key: getattr(args, flag.lstrip("-").replace("-", "_"), None)
        for key, flag in FLAGS.items()
    }
    overrides.update(extra)
    return config_mod.load(getattr(args, "config", None), overrides=overrides, flags=FLAGS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "client":
            from tgws.client import run as run_client
            code: int = run_client(args)
            return code
        if args.command == "apikey":
            return cmd_apikey(args)
        if args.command == "secret-key":
            from tgws.cli_secret import cmd_secret_key
            return cmd_secret_key(args)
        if args.command == "check-config":
            return cmd_check_config(args)
        if args.command == "sandbox":
            from tgws.sandbox.serve import cmd_sandbox_serve
            return cmd_sandbox_serve(load_config(args, **{
                "sandbox.seed": args.seed, "sandbox.hostile": True if args.hostile else None,
                "sandbox.tick": args.tick}), port=args.sandbox_port, idle_timeout=args.idle_timeout)
    except ConfigError as err:
        print(f"tgws: config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as err:
        print(f"tgws: store error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as err:
        print(f"tgws: {err.strerror or err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_CONFIG  # pragma: no cover (parser.error exits)


def cmd_serve(args: argparse.Namespace) -> int:
    from tgws.daemon import Daemon
    from tgws.logging_setup import setup_logging

    extra = {"telegram.backend": "sandbox"} if args.sandbox else {}
    config = load_config(args, **extra)
    config.require_credentials()  # names the file, and checks api_hash's shape
    setup_logging(config.log.level, config.log.format)
    daemon = Daemon(config, reload_loader=lambda: load_config(args, **extra))
    return asyncio.run(daemon.run())


def cmd_demo(args: argparse.Namespace) -> int:
    from tgws.daemon import Daemon
    from tgws.logging_setup import setup_logging
    from tgws.sandbox.banner import demo_banner

    with tempfile.TemporaryDirectory(prefix="tgws-demo-") as tmp:
        db = args.db or os.path.join(tmp, "tgws.db")
        extra = {"telegram.backend": "sandbox", "sandbox.tick": args.tick, "store.path": db,
                 "sandbox.seed": args.seed, "sandbox.hostile": True if args.hostile else None,
                 "sandbox.url": args.sandbox_url,
                 # GET /metrics for the curious (still only from loopback, [metrics] allow).
                 "metrics.enabled": True,
                 # A QR login is "scanned" by the owner's app 3 s after it is shown.
                 "sandbox.qr_accept_after": 3.0,
                 # examples/browser_client.html served as examples/README.md says.
                 "server.allowed_origins": ["http://127.0.0.1:8080", "http://localhost:8080"]}
        config = load_config(args, **extra)
        setup_logging(config.log.level, config.log.format)
        key = asyncio.run(_create_demo_key(config.store.path))

        def announce(daemon: Daemon) -> None:
            host = config.server.host
            url = f"{config.server.scheme}://{host}:{daemon.port}{config.server.path}"
            if config.sandbox.url:  # the world lives in `tgws sandbox serve`
                from tgws.sandbox.remote import remote_banner
                print(remote_banner(url=url, key=key, sandbox_url=config.sandbox.url),
                      flush=True)
                return
            print(demo_banner(daemon.backend.world, url=url, key=key, tick=args.tick,
                              hostile=config.sandbox.hostile), flush=True)

        daemon = Daemon(config, on_ready=announce)
        return asyncio.run(daemon.run())


async def _create_demo_key(db: str) -> str:
    from tgws.store import Store

    async with await Store.open(db) as store:
        names = {record.name for record in await store.list_api_keys()}
        name = "demo"
        n = 1
        while name in names:
            n += 1
            name = f"demo{n}"
        return await store.create_api_key(name)


def cmd_apikey(args: argparse.Namespace) -> int:
    config = load_config(args)
    path = config.store.path
    if not config.store.url and args.action != "create" and not Path(path).exists():
        print(f"tgws: no store at {path} (create a key first)", file=sys.stderr)
        return EXIT_FAILURE
    from tgws.sealing import load_keyring

    # With the keyring, opening the store also seals any plaintext session, as the daemon does.
    return asyncio.run(_apikey(args, config.store, load_keyring(config.store.secret_key_file)))


async def _apikey(args: argparse.Namespace, where: StoreConfig, keyring: Keyring | None) -> int:
    from tgws.store import Store

    async with await Store.open(where.target, keyring=keyring, deadline=where.timeout) as store:
        if args.action == "create":
            key = await store.create_api_key(args.name)
            # store.path: the file, or the URL without its password
            print(f"created API key {args.name!r} in {store.path}; it is shown once, keep it "
                  "safe:")
            print(key)
            return EXIT_OK
        if args.action == "list":
            records = await store.list_api_keys()
            print(f"{'NAME':<24} {'CREATED':<20} {'LAST USED':<20} STATUS")
            for r in records:
                print(f"{r.name:<24} {_when(r.created_at):<20} {_when(r.last_used_at):<20} "
                      f"{'revoked ' + _when(r.revoked_at) if r.revoked_at else 'active'}")
            return EXIT_OK
        if await store.revoke_api_key(args.name):
            print(f"revoked API key {args.name!r}; the daemon closes its connections and logs "
                  "its Telegram session out (now if it runs, else when it next starts)")
            return EXIT_OK
        print(f"tgws: no active API key named {args.name!r}", file=sys.stderr)
        return EXIT_FAILURE


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args)
    settings = config_mod.effective_settings(config)
    print(f"# effective settings ({config.source}; secrets masked)")
    print(json.dumps(settings, indent=2))
    # `tgws serve` would refuse this config, so check-config must too.
    config.require_credentials()
    from tgws.tls import server_context

    server_context(config.server, config.source)  # a certificate that would not load
    print("config OK")
    return EXIT_OK
