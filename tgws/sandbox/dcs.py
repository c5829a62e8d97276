"""Data centres: which DC a connection reaches, and which DC each account lives on.

The sandbox has Telegram's five production DCs, at Telegram's published addresses (DC 2 is
Telethon's default, so a fresh session reaches it). No socket is ever opened: the SandboxSender
reads the DC from the Connection object Telethon hands to connect() (its `_ip`, `_port` and
`_dc_id`), and every call it transmits carries that DC (Call.dc). help.getConfig lists all five
in every world, because Telethon caches the first getConfig answer on the TelegramClient
*class* (`_get_dc`), i.e. for every client in the process.

Where accounts live:
- a calm world (the default, `spread = False`): every account on DC 2, as before;
- a spread world (the hostile one): an account lives on `1 + hash(secret, phone) % 5` (accounts
  without a phone: by user id), unless placed with `place()`; the same seed gives the same map.

What Telegram answers (rpc.py, login.py), and what Telethon 1.45 does about it:
- auth.sendCode for a phone whose account lives on DC X, sent to another DC: 303
  PHONE_MIGRATE_X. Telethon's `_call` runs `_switch_dc(X)` (the session now names DC X, the
  auth key is dropped, a new one is made on connect) and sends the code request again there;
- a phone without an account gets its code anywhere (it is a sign-up); auth.signIn then creates
  the account on the phone's DC and, sent to another DC, answers 303 USER_MIGRATE_X: Telethon
  switches and signs in again there with the same code hash (codes are valid world-wide);
- any request that needs a login, made with a logged-in key on a DC other than the account's
  (e.g. after `place()` moved the account): USER_MIGRATE_X. Telethon switches DC and, having
  dropped the key, is logged out there (AUTH_KEY_UNREGISTERED on the retried request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telethon.tl import types

from tgws.sandbox.derive import derive

if TYPE_CHECKING:
    from tgws.sandbox.users import SandboxUser

# Telegram's production DCs (IPv4, port 443), as its getConfig lists them.
ADDRESSES: dict[int, tuple[str, int]] = {
    1: ("149.154.175.53", 443),
    2: ("149.154.167.51", 443),
    3: ("149.154.175.100", 443),
    4: ("149.154.167.91", 443),
    5: ("91.108.56.130", 443),
}
DEFAULT_DC = 2


class DataCentres:
    """The DC map of one world."""

    def __init__(self, secret: bytes, *, spread: bool = False) -> None:
        self.secret = secret
        self.spread = spread
        self._placed: dict[str, int] = {}  # phone digits, or "id:<user id>" -> DC

    @staticmethod
    def ids() -> tuple[int, ...]:
        return tuple(ADDRESSES)

    @staticmethod
    def address(dc: int) -> tuple[str, int]:
        return ADDRESSES[dc]

    @staticmethod
    def identify(connection: Any) -> int | None:
        """The DC a Telethon Connection points at (its address, else its dc id); None when it
        names no sandbox DC (the sender then refuses the connection)."""
        ip, port = getattr(connection, "_ip", None), getattr(connection, "_port", None)
        for dc, address in ADDRESSES.items():
            if address == (ip, port):
                return dc
        dc_id = getattr(connection, "_dc_id", None)
        return dc_id if isinstance(dc_id, int) and dc_id in ADDRESSES else None

    def options(self) -> list[Any]:
        """help.getConfig's dc_options."""
        return [types.DcOption(id=dc, ip_address=ip, port=port)
                for dc, (ip, port) in ADDRESSES.items()]

    def of_phone(self, digits: str) -> int:
        """The DC the account behind phone `digits` lives (or would be created) on."""
        placed = self._placed.get(digits)
        if placed is not None:
            return placed
        if not self.spread:
            return DEFAULT_DC
        return 1 + derive(self.secret, "dc", digits) % len(ADDRESSES)

    def of_user(self, user: SandboxUser) -> int:
        if user.phone:
            return self.of_phone(user.phone)
        placed = self._placed.get(f"id:{user.id}")
        if placed is not None:
            return placed
        if not self.spread:
            return DEFAULT_DC
        return 1 + derive(self.secret, "dc", user.id) % len(ADDRESSES)

    def place(self, who: SandboxUser | str, dc: int) -> None:
        """Put an account (a SandboxUser, or a phone's digits with or without "+") on `dc`.
        Moving an existing account makes its sessions elsewhere meet USER_MIGRATE_<dc>."""
        if dc not in ADDRESSES:
            raise ValueError(f"no DC {dc} (the sandbox has {', '.join(map(str, ADDRESSES))})")
        if isinstance(who, str):
            self._placed[who.lstrip("+")] = dc
        elif who.phone:
            self._placed[who.phone] = dc
        else:
            self._placed[f"id:{who.id}"] = dc


# Where the hostile world puts the demo's phones, so its logins meet every migration:
# the owner's and the 2FA account's sendCode answer PHONE_MIGRATE_1 / PHONE_MIGRATE_4, and the
# banner's example phone (no account yet) signs in through USER_MIGRATE_5.
HOSTILE_PLACES: dict[str, int] = {"15550000001": 1, "19995550002": 4, "919876543210": 5}


def spread_accounts(dcs: DataCentres) -> None:
    """Make `dcs` a hostile world's map: accounts over all five DCs, the demo's pinned."""
    dcs.spread = True
    for digits, dc in HOSTILE_PLACES.items():
        dcs.place(digits, dc)
