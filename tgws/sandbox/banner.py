"""What `tgws demo` prints on start: read from the world it serves, so the banner stays true.

The calm world's banner is the one the demo always printed. The hostile world's adds what is
hostile: its extra chats (hostile.BANNER, for those the world holds), the fault plan's rate,
kinds and latency, and which demo phones live on another data centre.
"""

from __future__ import annotations

from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.dcs import DEFAULT_DC
from tgws.sandbox.demo import CHANNEL, GROUP_1, GROUP_2, OWNER_PHONE, PASSWORD, PASSWORD_PHONE
from tgws.sandbox.hostile import BANNER as HOSTILE_LINES
from tgws.sandbox.login import normalize_phone
from tgws.sandbox.world import World

EXAMPLE_PHONE = "+919876543210"
_INDENT = " " * 13


def _chat(world: World, name: str) -> SandboxChat | None:
    found = world.resolve(name)
    return found if isinstance(found, SandboxChat) else None


def _demo_chats(world: World) -> list[str]:
    one, two, channel = (_chat(world, name) for name in (GROUP_1, GROUP_2, CHANNEL))
    lines = []
    if one is not None and two is not None:
        lines.append(f"  groups     {GROUP_1} ({one.members_count} members, {one.count} messages), "
                     f"{GROUP_2} ({two.members_count}, {two.count})")
    if channel is not None:
        lines.append(f"  channel    {CHANNEL} ({channel.count} posts)")
    return lines


def _hostile_lines(world: World) -> list[str]:
    lines: list[str] = []
    chats = [line for line in HOSTILE_LINES if world.resolve(line.split(":", 1)[0])]
    for i, line in enumerate(chats):
        lines.append(("  hostile    " if i == 0 else _INDENT) + line)
    faults = world.faults
    if faults.rate > 0 and faults.kinds:
        kinds = ", ".join(f"flood (FLOOD_WAIT_{faults.flood_wait})" if kind == "flood" else kind
                          for kind in faults.kinds)
        lines.append(f"  faults     {faults.rate:.0%} of calls (seed {faults.seed}): {kinds}")
    else:
        lines.append("  faults     none (fault_rate = 0)")
    if world.dcs.spread:
        lines.append("  DCs        accounts live on DCs 1-5 (by phone); logging in migrates:")
        for phone in (OWNER_PHONE, PASSWORD_PHONE, EXAMPLE_PHONE):
            digits = normalize_phone(phone)
            assert digits is not None
            dc = world.dcs.of_phone(digits)
            if dc == DEFAULT_DC:
                continue
            how = ("sendCode answers PHONE_MIGRATE" if world.by_phone(phone) is not None
                   else "signIn answers USER_MIGRATE")
            lines.append(f"{_INDENT}{phone} on DC {dc} ({how}_{dc})")
    return lines


def _qr_lines(world: World) -> list[str]:
    qr = world.login.qr
    if qr.accept_after <= 0:
        return []
    return [f"{_INDENT}or by QR code (login --qr): {qr.accept_as}'s app scans it after "
            f"{qr.accept_after:g} s"]


def demo_banner(world: World, *, url: str, key: str, tick: float, hostile: bool) -> str:
    """The banner for `world` served at `url` with the API key `key`."""
    title = ("tgws demo --hostile: the sandbox Telegram as it really is, no account needed."
             if hostile else "tgws demo: the sandbox Telegram, no account needed.")
    lines = [
        title,
        "",
        f"  websocket  {url}",
        f"  api key    {key}",
        f"  login      any phone (e.g. {EXAMPLE_PHONE}), code {world.login_code};",
        f"{_INDENT}{PASSWORD_PHONE} also needs the 2FA password {PASSWORD}",
        *_qr_lines(world),
        *_demo_chats(world),
        (f"  the world  one new message per chat every {tick} s, a new member every 5th tick"
         if tick > 0 else "  the world  stands still (--tick 0)"),
    ]
    if hostile:
        lines += _hostile_lines(world)
    if world.latency > 0:
        lines.append(f"  latency    {world.latency:g} s before every answer")
    lines += [
        "",
        f"  try:  tgws client --url {url} --api-key {key} login --phone {EXAMPLE_PHONE}",
        f"        tgws client --url {url} --api-key {key} users {GROUP_1}",
        "Ctrl-C stops.",
    ]
    return "\n".join(lines)
