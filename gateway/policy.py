"""The regulations' rules that are not about time: which messengers a school may use.

Foreign messengers are banned for official school communication; a configuration naming one is rejected with
the rule it breaks, and links to them are flagged in announcement texts.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from gateway.domain import AnnouncementRequest, Group, Kind, Role, School, has_control_characters
from gateway.errors import InvalidInput, PolicyViolation, Problem, Unprocessable

BANNED_RULE = (
    "иностранные мессенджеры запрещены для официальной связи школы с обучающимися и родителями: "
    "перечень Роскомнадзора к ст. 10 Федерального закона № 149-ФЗ (в ред. № 584-ФЗ, с 01.03.2023), "
    "ст. 15 Федерального закона № 41-ФЗ (с 01.06.2025) и региональные приказы об использовании "
    "ИКОП «Сферум». "
    "Используйте официальные чаты в MAX (Сферум) или VK"
)

# Normalised spelling -> the messenger's proper name.
BANNED_MESSENGERS: dict[str, str] = {
    "telegram": "Telegram",
    "tg": "Telegram",
    "телеграм": "Telegram",
    "телеграмм": "Telegram",
    "whatsapp": "WhatsApp",
    "wa": "WhatsApp",
    "ватсап": "WhatsApp",
    "вотсап": "WhatsApp",
    "viber": "Viber",
    "вайбер": "Viber",
    "skype": "Skype",
    "skypeforbusiness": "Skype for Business",
    "скайп": "Skype",
    "discord": "Discord",
    "дискорд": "Discord",
    "teams": "Microsoft Teams",
    "microsoftteams": "Microsoft Teams",
    "msteams": "Microsoft Teams",
    "snapchat": "Snapchat",
    "threema": "Threema",
    "wechat": "WeChat",
    "weixin": "WeChat",
}

_BANNED_HOSTS = re.compile(
    r"(?:https?://)?(?:www\.)?(?P<host>t\.me|telegram\.me|telegram\.org|wa\.me|chat\.whatsapp\.com|"
    r"whatsapp\.com|invite\.viber\.com|viber\.com|join\.skype\.com|discord\.gg|discord\.com|"
    r"teams\.microsoft\.com|snapchat\.com|threema\.id|weixin\.qq\.com)\b",
    re.IGNORECASE,
)

_HOST_NAMES = {
    "t.me": "Telegram",
    "telegram.me": "Telegram",
    "telegram.org": "Telegram",
    "wa.me": "WhatsApp",
    "chat.whatsapp.com": "WhatsApp",
    "whatsapp.com": "WhatsApp",
    "invite.viber.com": "Viber",
    "viber.com": "Viber",
    "join.skype.com": "Skype",
    "discord.gg": "Discord",
    "discord.com": "Discord",
    "teams.microsoft.com": "Microsoft Teams",
    "snapchat.com": "Snapchat",
    "threema.id": "Threema",
    "weixin.qq.com": "WeChat",
}


def banned_messenger(channel: str) -> str | None:
    """The banned messenger a channel name means ("Telegram" for "telegram", "TG", "Телеграм"), or None."""
    normalised = re.sub(r"[\s_\-.]", "", channel.casefold())
    return BANNED_MESSENGERS.get(normalised)


def banned_links(text: str) -> list[str]:
    """The banned messengers linked from `text` (invite links such as t.me/…, chat.whatsapp.com/…)."""
    found: list[str] = []
    for m in _BANNED_HOSTS.finditer(text):
        name = _HOST_NAMES[m.group("host").lower()]
        if name not in found:
            found.append(name)
    return found


MAX_TITLE = 200
MAX_TEXT = 20_000


SEND_AT_PAST = timedelta(days=30)  # a send time further back is a typo (the wrong year), not "now"
SEND_AT_AHEAD = timedelta(days=366)


def _plausible(send_at: datetime, now: datetime) -> bool:
    try:
        return now - SEND_AT_PAST <= send_at <= now + SEND_AT_AHEAD
    except OverflowError:  # year 1 or 9999 in a zone whose offset takes it past what datetime holds
        return False


def check_request(school: School, request: AnnouncementRequest, now: datetime) -> None:
    """Refuse a request the school's rules do not allow, with a Russian reason; InvalidInput for bad fields,
    Unprocessable for values nothing can be done with."""
    unreadable = [
        Problem("объявление", "недопустимый управляющий символ (например, NUL): удалите его", None, field)
        for field, value in (
            ("title", request.title),
            ("text", request.text),
            ("reason", request.reason),
            ("key", request.idempotency_key),
        )
        if has_control_characters(value)
    ]
    if request.send_at is not None and request.send_at.tzinfo is not None and not _plausible(request.send_at, now):
        unreadable.append(
            Problem(
                "объявление",
                f"время отправки должно быть не раньше чем за {SEND_AT_PAST.days} дней и не позже чем через "
                f"{SEND_AT_AHEAD.days} дней от сегодняшнего",
                None,
                "send_at",
            )
        )
    if unreadable:
        raise Unprocessable(unreadable)
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append(Problem("объявление", message, None, field))

    if not request.title.strip():
        bad("title", "заголовок не может быть пустым")
    elif len(request.title) > MAX_TITLE:
        bad("title", f"заголовок длиннее {MAX_TITLE} символов")
    if not request.text.strip():
        bad("text", "текст не может быть пустым")
    elif len(request.text) > MAX_TEXT:
        bad("text", f"текст длиннее {MAX_TEXT} символов")
    if not request.audience.groups:
        bad("audience", "не выбрано, кому: родители, ученики или учителя")
    for name in sorted(request.audience.classes - set(school.classes)):
        bad("audience", f"класса {name} нет в школе «{school.name}»")
    parallels = {c.parallel for c in school.classes.values()}
    for p in sorted(request.audience.parallels - parallels):
        bad("audience", f"в школе нет {p}-х классов")
    if request.send_at is not None and request.send_at.tzinfo is None:
        bad("send_at", "время отправки без часового пояса")
    if problems:
        raise InvalidInput(problems)

    author = school.staff.get(request.author)
    if author is None:
        raise PolicyViolation(f"сотрудник «{request.author}» не найден в школе «{school.name}»")
    if author.role in (Role.DIRECTOR, Role.DEPUTY):
        return
    if author.role is not Role.CLASS_TEACHER:
        raise PolicyViolation(
            f"{author.role.label} не может публиковать объявления: это делают директор, его заместители "
            "и классные руководители (для своего класса)"
        )
    own = {name for name, cls in school.classes.items() if cls.teacher == author.id}
    if request.kind is Kind.FORCE_MAJEURE:
        raise PolicyViolation("отметить объявление как срочное (форс-мажор) могут только директор и его заместители")
    if Group.TEACHERS in request.audience.groups:
        raise PolicyViolation("классный руководитель не публикует в чат учителей")
    if request.audience.whole_school or request.audience.parallels or not request.audience.classes <= own:
        mine = ", ".join(sorted(own)) or "нет"
        raise PolicyViolation(f"классный руководитель публикует только в свой класс (ваши классы: {mine})")
