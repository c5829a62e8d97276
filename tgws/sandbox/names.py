"""Members with names in many scripts, as real groups have them, deterministic per number.

Each script has its own pools of first and last names (CJK names keep the family name in
`last_name`, so search finds either); some people have only an emoji for a name, some a Latin
username beside a name in another script. A participant search must find them by the prefix of
any word of their first or last name in its own script (users.py `matches`), never by a
transliteration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tgws.sandbox.derive import mix64

if TYPE_CHECKING:
    from tgws.sandbox.users import SandboxUser
    from tgws.sandbox.world import World

# script -> (first names, last names, username stems); None in last names: no last name.
SCRIPTS: dict[str, tuple[tuple[str, ...], tuple[str | None, ...], tuple[str, ...]]] = {
    "cyrillic": (("Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Наталья", "Сергей",
                  "Екатерина", "Юлия", "Ёжик"),
                 ("Петров", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", None),
                 ("ivan", "masha", "lesha", "olga", "dima", "natasha", "serg", "katya")),
    "arabic": (("محمد", "فاطمة", "أحمد", "مريم", "علي", "ليلى", "يوسف", "نور"),
               ("العلي", "حسن", "الخطيب", "منصور", "سعيد", None),
               ("mohammed", "fatima", "ahmad", "maryam", "ali", "layla")),
    "cjk": (("伟", "芳", "娜", "秀英", "太郎", "花子", "翔太", "민준", "서연", "지훈"),
            ("王", "李", "张", "刘", "田中", "佐藤", "鈴木", "김", "이", "박"),
            ("wang", "li", "zhang", "tanaka", "sato", "kim", "park")),
    "greek": (("Νίκος", "Ελένη", "Γιώργος", "Μαρία"), ("Παπαδόπουλος", "Οικονόμου", None),
              ("nikos", "eleni", "giorgos")),
    "emoji": (("🦊", "🌸🌸", "🚀✨", "🐙", "☕️", "🎧🎶", "🌍"), (None,), ()),
}
SCRIPT_NAMES = tuple(SCRIPTS)


def international_user(world: World, n: int, *, script: str | None = None,
                       deleted: bool = False) -> SandboxUser:
    """Person number `n` of this world's international crowd (same n, same person).
    `deleted`: a deleted account, which Telegram shows with no name at all."""
    if deleted:
        return world.user(first_name="", deleted=True, status="long_ago")
    h = mix64(world.seed * 1_000_003 + n)
    if script is None:
        script = SCRIPT_NAMES[h % len(SCRIPT_NAMES)]
    firsts, lasts, stems = SCRIPTS[script]
    first = firsts[(h >> 8) % len(firsts)]
    last = lasts[(h >> 16) % len(lasts)]
    username = None
    if stems and (h >> 24) % 3 != 0:
        username = f"{stems[(h >> 28) % len(stems)]}_{script[:3]}{n}"
    status = ("online", "recently", "offline", "last_week", "last_month")[(h >> 32) % 5]
    return world.user(username, first_name=first, last_name=last, status=status)
