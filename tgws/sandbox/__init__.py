"""The in-process sandbox Telegram: a fake world below an unmodified Telethon TelegramClient.

Why this seam (perf-physics.md §7, "seam A"): a SandboxSender replaces the client's
MTProtoSender, and a World answers each request the way Telegram documents it.
- In-process and deterministic: no sockets, no threads, ids and dates derive from a seed.
- No MTProto crypto code to own: no DH, AES-IGE or message containers to get right.
- Faults are data: a seeded plan per world (faults.py, `world.faults`) decides at this seam
  which call meets a 5xx, a flood wait, a dropped connection, latency or a stall, and the
  sender carries it out as MTProtoSender would (reconnect, re-send). Any RPC error can be
  scripted (World.fail) and reaches Telethon as its own exception class.
- Five data centres (dcs.py, `world.dcs`): PHONE_MIGRATE / USER_MIGRATE move Telethon for real.
- Updates (updates.py, `world.updates`; differences.py): every change is recorded with its
  pts and pushed to clients built with receive_updates=True, through the client's own updates
  queue, so Telethon's MessageBox and event handlers run; pushes can be dropped, reordered or
  muted, and getDifference / getChannelDifference (TooLong included) answer from the records.
- Wire mode (World(wire=True), or per client) still charges Telethon the real TL
  deserialization: every answer is serialized and read back with request.read_result(), so the
  sandbox costs Telethon what Telegram does, and a malformed fake object fails loudly.

What it covers: login by code (any phone, code 12345 by default), two-step passwords with a
real SRP check (srp.py), log-out, sessions that survive a restart with the same seed (keys.py),
username resolution, channels and megagroups with members and roles, GetHistory and
GetParticipants with Telegram's paging semantics (history.py, members.py), lazy histories of
millions of messages (lazy.py), deleted and edited messages, members who leave, changes in the
middle of a stream (hooks.py), basic groups and their upgrade (basic.py), ground truth (truth.py)
and the hostile world (hostile.py). Anything else fails with METHOD_NOT_SUPPORTED_BY_SANDBOX.

    world = World(seed=0)
    alice = world.user("alice", phone="+15550001")
    group = world.megagroup("testgroup00001", title="Test group 1")
    group.join(alice)
    group.post(alice, "hello")
    client = make_sandbox_client(world, StringSession(), receive_updates=False)
"""

from tgws.sandbox.chats import SandboxChat
from tgws.sandbox.client import make_sandbox_client, sandbox_client
from tgws.sandbox.demo import build_demo_world, tick
from tgws.sandbox.errors import SandboxRpcError
from tgws.sandbox.hostile import build_hostile_world
from tgws.sandbox.members import Member
from tgws.sandbox.messages import SandboxMessage
from tgws.sandbox.sender import SandboxSender
from tgws.sandbox.users import SandboxUser
from tgws.sandbox.world import World

__all__ = [
    "Member",
    "SandboxChat",
    "SandboxMessage",
    "SandboxRpcError",
    "SandboxSender",
    "SandboxUser",
    "World",
    "build_demo_world",
    "build_hostile_world",
    "make_sandbox_client",
    "sandbox_client",
    "tick",
]
