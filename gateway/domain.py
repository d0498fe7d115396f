"""Domain types: schools, classes, staff, chats, guardians, announcements and deliveries.

Plain frozen dataclasses and enums. They know nothing of files, SQL or wire formats.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

from schedules.calendar import SchoolCalendar
from schedules.windows import DEFAULT_WINDOW, MessagingWindow


class Role(StrEnum):
    DIRECTOR = "director"
    DEPUTY = "deputy"
    CLASS_TEACHER = "class_teacher"
    TEACHER = "teacher"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        return _ROLE_LABELS[self]


_ROLE_LABELS = {
    Role.DIRECTOR: "директор",
    Role.DEPUTY: "заместитель директора",
    Role.CLASS_TEACHER: "классный руководитель",
    Role.TEACHER: "учитель",
    Role.ADMIN: "администратор",
}


class Kind(StrEnum):
    """What an announcement is about."""

    SCHEDULE_CHANGE = "schedule_change"
    EVENT = "event"
    FORCE_MAJEURE = "force_majeure"
    GENERAL = "general"

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


_KIND_LABELS = {
    Kind.SCHEDULE_CHANGE: "Изменение расписания",
    Kind.EVENT: "Мероприятие",
    Kind.FORCE_MAJEURE: "Срочно",
    Kind.GENERAL: "Объявление",
}


class ChatKind(StrEnum):
    """The official chats of a school (the regional regulations name exactly these three)."""

    PARENTS = "parents"
    STUDENTS = "students"
    TEACHERS = "teachers"

    @property
    def label(self) -> str:
        return _CHAT_KIND_LABELS[self]


_CHAT_KIND_LABELS = {
    ChatKind.PARENTS: "чат родителей",
    ChatKind.STUDENTS: "чат учеников",
    ChatKind.TEACHERS: "чат учителей",
}


class Group(StrEnum):
    """Who an announcement is for."""

    PARENTS = "parents"
    STUDENTS = "students"
    TEACHERS = "teachers"


class Status(StrEnum):
    """A delivery's state. The last four are final."""

    PENDING = "pending"
    SENDING = "sending"
    TEMPORARY_FAILURE = "temporary_failure"
    UNKNOWN = "unknown"
    DELIVERED = "delivered"
    PERMANENT_FAILURE = "permanent_failure"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def label(self) -> str:
        return _STATUS_LABELS[self]


FINAL_STATUSES = frozenset({Status.DELIVERED, Status.PERMANENT_FAILURE, Status.CANCELLED})
OPEN_STATUSES = frozenset(set(Status) - FINAL_STATUSES)

_STATUS_LABELS = {
    Status.PENDING: "ожидает отправки",
    Status.SENDING: "отправляется",
    Status.TEMPORARY_FAILURE: "временная ошибка, повтор",
    Status.UNKNOWN: "исход неизвестен, проверяется",
    Status.DELIVERED: "доставлено",
    Status.PERMANENT_FAILURE: "не доставлено",
    Status.CANCELLED: "отменено",
}

CHAT_CHANNELS = ("max", "vk")
EMAIL = "email"


@dataclass(frozen=True, slots=True)
class ChatBinding:
    """An official chat the gateway posts into: a MAX chat_id or a VK peer_id, sent with a school's bot."""

    kind: ChatKind
    channel: str
    address: str
    account: str


@dataclass(frozen=True, slots=True)
class Staff:
    id: str
    name: str
    role: Role
    email: str = ""
    phone: str = ""


@dataclass(frozen=True, slots=True)
class SchoolClass:
    name: str
    parallel: int
    teacher: str = ""
    window: MessagingWindow | None = None  # the class teacher's narrower window for this class's chats
    chats: dict[ChatKind, ChatBinding] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class School:
    id: str
    name: str
    zone: ZoneInfo
    window: MessagingWindow = DEFAULT_WINDOW
    calendar: SchoolCalendar = field(default_factory=SchoolCalendar)
    classes: dict[str, SchoolClass] = field(default_factory=dict)
    staff: dict[str, Staff] = field(default_factory=dict)
    teachers_chat: ChatBinding | None = None
    email_in_window: bool = False  # hold e-mails to the school window too (default: e-mail goes at once)
    forwarding_deadline: str = "escalate"  # at a forwarding task's deadline: "escalate" or "auto"(-forward)

    def window_for(self, class_name: str) -> MessagingWindow:
        """The chat window of a class: the class teacher's narrower one, or the school's."""
        cls = self.classes.get(class_name)
        return cls.window if cls is not None and cls.window is not None else self.window

    def with_class_windows(self, windows: Mapping[str, MessagingWindow]) -> School:
        """The school with the class windows set at run time (kept in the store) in place of the configured ones.

        A window of a class the school no longer has, or one no longer inside the school's window (the school
        file changed since it was set), is left out: the configured class window, or the school's, applies."""
        classes = dict(self.classes)
        for name, window in windows.items():
            cls = classes.get(name)
            if cls is not None and cls.window != window and self.window.contains(window):
                classes[name] = replace(cls, window=window)
        return self if classes == self.classes else replace(self, classes=classes)

    def may_set_class_window(self, staff_id: str, class_name: str) -> bool:
        """Who may narrow a class's chat window: its class teacher; the director, the deputies and the IT admin
        for any class of the school; nobody else."""
        member = self.staff.get(staff_id)
        cls = self.classes.get(class_name)
        if member is None or cls is None:
            return False
        if member.role in (Role.DIRECTOR, Role.DEPUTY, Role.ADMIN):
            return True
        return member.role is Role.CLASS_TEACHER and cls.teacher == member.id

    def chats(self) -> list[ChatBinding]:
        out = [c for cls in self.classes.values() for c in cls.chats.values()]
        if self.teachers_chat:
            out.append(self.teachers_chat)
        return out


_NUMBER = re.compile(r"[0-9]{1,15}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    """Whether a text holds characters nobody types (NUL and the other C0 controls but tab and line breaks): no
    store keeps them (PostgreSQL refuses NUL outright), so every text that comes in is checked for them."""
    return _CONTROL.search(text) is not None


def parse_number(raw: str) -> int | None:
    """A whole number in ASCII digits (at most 15 of them); None otherwise. Not `str.isdigit()`: «²», «١» and «１»
    are digits to it, and `int()` reads the last two, so ids, limits and form fields take only 0-9."""
    return int(raw) if _NUMBER.fullmatch(raw) else None


_CLASS_NAME = re.compile(r"^(?P<parallel>1[01]|[1-9])\s*-?\s*(?P<letter>[А-ЯЁA-Z]{1,2})?$", re.IGNORECASE)


def parse_class_name(raw: str) -> tuple[str, int] | None:
    """Normalise a class name ("7б", "7-Б", " 7 Б ") to ("7Б", 7); None when it is not a class name."""
    m = _CLASS_NAME.match(raw.strip())
    if not m:
        return None
    letter = (m.group("letter") or "").upper()
    return f"{m.group('parallel')}{letter}", int(m.group("parallel"))


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One row of the electronic journal's export: a guardian of a student of a class."""

    class_name: str
    student: str
    guardian: str
    email: str
    phone: str
    in_chat: bool
    line: int = 0


class Guardian(NamedTuple):
    """A guardian as the planner sees one: stable key, contact data and, per class, chat membership.

    A named tuple rather than a frozen dataclass: every post reads its school's thousand guardians from the store,
    and a frozen dataclass took 2.3 us to build against 0.4 us (bench/plan_region.py builds 200,000 of them).
    """

    key: str
    name: str
    email: str
    phone: str
    opted_out: bool
    classes: dict[str, bool]  # class name -> in that class's parents' chat


@dataclass(frozen=True, slots=True)
class Audience:
    """Which classes (all, some parallels, or listed classes) and which groups of people."""

    groups: frozenset[Group]
    parallels: frozenset[int] = frozenset()
    classes: frozenset[str] = frozenset()

    @property
    def whole_school(self) -> bool:
        return not self.parallels and not self.classes

    def class_names(self, school: School) -> list[str]:
        """The school's classes this audience reaches, in the school's order."""
        if not (self.groups & {Group.PARENTS, Group.STUDENTS}):
            return []
        return [
            name
            for name, cls in school.classes.items()
            if self.whole_school or cls.parallel in self.parallels or name in self.classes
        ]

    def describe(self) -> str:
        who = ", ".join(_GROUP_LABELS[g] for g in Group if g in self.groups)
        if not (self.groups & {Group.PARENTS, Group.STUDENTS}):
            return who
        if self.whole_school:
            where = "вся школа"
        else:
            parts = [f"все {p}-е" for p in sorted(self.parallels)] + sorted(self.classes)
            where = ", ".join(parts)
        return f"{where}; {who}"


_GROUP_LABELS = {Group.PARENTS: "родители", Group.STUDENTS: "ученики", Group.TEACHERS: "учителя"}


@dataclass(frozen=True, slots=True)
class AnnouncementRequest:
    """What the author asked for, before planning."""

    school_id: str
    author: str
    kind: Kind
    title: str
    text: str
    audience: Audience
    send_at: datetime | None = None
    idempotency_key: str = ""
    reason: str = ""  # why, for force majeure (audit log); the title when empty
    via_class_teachers: bool = False  # class chats get it from their class teachers, who may add a note

    def digest(self) -> str:
        """What was asked, as a fingerprint: an idempotency key reused with another request is told apart by it."""
        asked = [
            self.school_id,
            self.author,
            self.kind.value,
            self.title,
            self.text,
            sorted(g.value for g in self.audience.groups),
            sorted(self.audience.parallels),
            sorted(self.audience.classes),
            None if self.send_at is None else self.send_at.timestamp(),
            self.reason,
            self.via_class_teachers,
        ]
        return hashlib.sha256(json.dumps(asked, ensure_ascii=False).encode()).hexdigest()
