"""`tgws secret-key`: the key file that encrypts stored Telegram sessions at rest.

    create FILE   a new key file, mode 0600 (refuses to overwrite anything)
    rotate FILE   a new key first in FILE; the old keys stay so existing sessions still open
    reseal        re-encrypt every stored session with the first key ([store] secret_key_file
                  of the config), plaintext ones included; safe while the daemon runs
    prune FILE    keep only the first key (after reseal, so no session needs the old ones)

The daemon reseals by itself at start, so `rotate` + restart + `prune` also rotates.
See docs/security.md, "Account keys at rest".
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tgws.errors import ConfigError, StoreError
from tgws.sealing import create_key_file, load_keyring, prune_key_file, rotate_key_file


def cmd_secret_key(args: argparse.Namespace) -> int:
    if args.action == "create":
        try:
            kid = create_key_file(args.file)
        except FileExistsError:
            print(f"tgws: {args.file} exists; not overwriting a key file", file=sys.stderr)
            return 1
        print(f"created key {kid} in {args.file} (mode 0600); set [store] secret_key_file "
              "to it and keep a copy away from the database")
        return 0
    if args.action == "rotate":
        kid = rotate_key_file(args.file)
        print(f"new first key {kid} in {args.file}; older keys still decrypt. Next: "
              "`tgws secret-key reseal` (or restart the daemon), then `tgws secret-key prune`")
        return 0
    if args.action == "prune":
        dropped = prune_key_file(args.file)
        print(f"removed {dropped} older key(s) from {args.file}")
        return 0
    return asyncio.run(_reseal(args))


async def _reseal(args: argparse.Namespace) -> int:
    from tgws.cli import load_config
    from tgws.store import Store

    config = load_config(args)
    keyring = load_keyring(config.store.secret_key_file)
    if keyring is None:
        raise ConfigError("tgws secret-key reseal needs [store] secret_key_file in the config")
    # Opening the store with the keyring reseals (Store.open); reseal_sessions() then finds
    # nothing left to do but counts what it cannot open.
    async with await Store.open(config.store.target, keyring=keyring,
                                deadline=config.store.timeout) as store:
        _, unreadable = await store.reseal_sessions()
    if unreadable:
        raise StoreError(
            f"{unreadable} session(s) are sealed with a key that is not in "
            f"{config.store.secret_key_file}; keep the key that sealed them (do not prune)")
    print(f"every stored session is sealed with key {keyring.primary_id}")
    return 0
