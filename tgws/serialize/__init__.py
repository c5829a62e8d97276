"""Telethon objects to JSON: group members and messages, schema version 1 (SCHEMA_VERSION).

`user(u)` and `message(m)` turn Telethon TL objects into JSON-native dicts (str, int, float,
bool, None, list, dict; no bytes, no datetimes); `user_envelope` / `message_envelope` wrap
one item in the seed protocol's reply shape and encode it with orjson (`user_frames` /
`message_frames`: the same bytes for a whole page, what streams use). docs/schemas.md
documents every field; a change that removes or retypes a field bumps SCHEMA_VERSION.

This runs once per streamed item, so it is written for speed rather than generality:
plain attribute access on the classes Telethon 1.4x produces and dispatch on `type(obj)`
through dicts built once at import. Not `to_dict()`: it walks every nested object (file
references, thumbnails, reactions...), costs more than this whole module per message, and
its output still holds datetimes and bytes plus TL's field names rather than our schema.
Only rare objects (service-message actions, unknown media) take the reflective path.

Rules that hold everywhere:

* Dates are ISO 8601 UTC strings with a "Z" suffix, whole seconds ("2024-05-01T12:00:00Z").
  Telegram dates are whole seconds; a naive datetime is taken to be UTC, as Telethon does.
* Peer ids are "marked" the way Telethon's `chat_id`/`sender_id` and the Bot API mark
  them: a user is its positive id, a basic group is -id, a channel/supergroup is
  -(10**12 + id) (the familiar -100... form). Bare user-id fields are copied as they are.
* Nothing here raises on a TL class it does not know: unknown media and actions become
  {"type": <snake_case of the class name>, ...its simple fields}, and objects missing
  attributes (UserEmpty, partial objects) are retried through a lenient view that reads
  missing attributes as None.

Modules: common (dates, marked peer ids, the reflective path, the envelope encoder), users,
media, messages (which uses media). Callers import the package: `serialize.user(u)`.
"""

from __future__ import annotations

from tgws.serialize.common import SCHEMA_VERSION
from tgws.serialize.messages import is_migrate_to, message, message_envelope, message_frames
from tgws.serialize.users import join_date, user, user_envelope, user_frames

__all__ = ["SCHEMA_VERSION", "is_migrate_to", "join_date", "message", "message_envelope",
           "message_frames",
           "user", "user_envelope", "user_frames"]
