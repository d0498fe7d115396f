"""Turning an announcement into deliveries: who gets it, through which channel, and who cannot be reached.

The rules (DESIGN.md, the regulations):
- each class in the audience gets it in its parents' chat and/or students' chat; the teachers get it in the
  school's teachers' chat;
- every guardian of those classes whom no working parents' chat of the audience reaches gets one e-mail — one
  per mailbox, even with children in several classes of the audience (a parent in the 5А chat is not e-mailed
  for their 5Б child when the announcement goes to both chats);
- a guardian with neither chat nor e-mail (or who unsubscribed) is recorded as unreachable, never dropped,
  with the reason no chat reached them;
- a class with no usable chat of a kind the audience needs is recorded as a gap;
- routed through class teachers, the class chats are not posted to directly: each class gets a forwarding task
  for its class teacher, and the guardians in its chat wait for that forward (e-mails go out as usual; a
  guardian is then reached only through their own class's chat, since each class forwards on its own).

Each delivery goes out at `earliest(chat, class)` (the windows and calendars decide it; see gateway/app.py); a
chat delivery later than the announcement's `start` is `held` — held deliveries of one chat waiting for the
same window opening are later sent as one message.

Planning is pure: the same inputs give the same plan. The store commits the plan in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from gateway.domain import (
    EMAIL,
    AnnouncementRequest,
    ChatBinding,
    ChatKind,
    Group,
    Guardian,
    School,
)


class Route(StrEnum):
    CHAT = "chat"
    EMAIL = "email"
    NONE = "none"


class Note(StrEnum):
    """Why a delivery or a coverage line is what it is; the report turns these into Russian."""

    IN_CHAT = "in_chat"
    IN_OTHER_CHAT = "in_other_chat"
    NOT_IN_CHAT = "not_in_chat"
    NO_CHAT = "no_chat"
    CHAT_DEAD = "chat_dead"
    CHAT_FAILED = "chat_failed"
    FORWARDING = "forwarding"
    ESCALATION = "escalation"


NOTE_LABELS = {
    Note.IN_CHAT: "в чате класса",
    Note.IN_OTHER_CHAT: "в чате другого класса",
    Note.NOT_IN_CHAT: "нет в чате родителей",
    Note.NO_CHAT: "у класса нет такого чата",
    Note.CHAT_DEAD: "чат недоступен (бот удалён или чат закрыт)",
    Note.CHAT_FAILED: "сообщение в чат не доставлено",
    Note.FORWARDING: "ждёт пересылки классным руководителем",
    Note.ESCALATION: "письмо автору: классы не переслали в срок",
}


class PlannedDelivery(NamedTuple):
    """One message to send: a chat post or a letter. Named tuples, like `Coverage`, because a region-wide post
    builds a quarter of a million of them and a frozen dataclass took five times as long to build."""

    channel: str
    account: str
    target: str
    class_name: str
    chat_kind: ChatKind | None
    note: Note
    not_before: datetime
    recipient_name: str = ""
    held: bool = False


@dataclass(frozen=True, slots=True)
class ForwardingTask:
    """A class teacher's task: forward the announcement to the class's chats of these groups by `deadline`."""

    class_name: str
    teacher: str
    groups: tuple[str, ...]
    deadline: datetime


class Coverage(NamedTuple):
    """How one person (a guardian of a class, or a staff member) is reached by this announcement."""

    person: str
    class_name: str
    route: Route
    delivery: int | None  # index into Plan.deliveries
    email: str  # where to fall back to if the chat fails
    note: Note


@dataclass(frozen=True, slots=True)
class Gap:
    class_name: str
    chat_kind: ChatKind
    note: Note


@dataclass(slots=True)
class Plan:
    deliveries: list[PlannedDelivery] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    tasks: list[ForwardingTask] = field(default_factory=list)

    def count(self, channel: str) -> int:
        return sum(1 for d in self.deliveries if d.channel == channel)

    def unreachable(self) -> list[Coverage]:
        return [c for c in self.coverage if c.route is Route.NONE]


Earliest = Callable[[ChatBinding | None, str], datetime]
"""When a delivery may go out at the earliest: given its chat (None for e-mail) and its class name."""


def plan(
    school: School,
    request: AnnouncementRequest,
    guardians: Iterable[Guardian],
    *,
    dead_chats: Collection[tuple[str, str]],
    earliest: Earliest,
    start: datetime | None = None,
    deadline: Callable[[str], datetime] | None = None,
) -> Plan:
    """The deliveries, coverage and gaps for one announcement to one school."""
    result = Plan()
    emails: dict[str, int] = {}
    classes = request.audience.class_names(school)
    by_class: dict[str, list[Guardian]] = {name: [] for name in classes}
    if Group.PARENTS in request.audience.groups:
        for guardian in guardians:
            for class_name in guardian.classes:
                if class_name in by_class:
                    by_class[class_name].append(guardian)

    def usable(binding: ChatBinding | None) -> bool:
        return binding is not None and (binding.channel, binding.address) not in dead_chats

    def add_chat(binding: ChatBinding, class_name: str) -> int:
        when = earliest(binding, class_name)
        held = start is not None and when > start
        result.deliveries.append(
            PlannedDelivery(
                binding.channel,
                binding.account,
                binding.address,
                class_name,
                binding.kind,
                Note.IN_CHAT,
                when,
                held=held,
            )
        )
        return len(result.deliveries) - 1

    def add_email(address: str, name: str, class_name: str, note: Note) -> int:
        index = emails.get(address)
        if index is None:
            result.deliveries.append(
                PlannedDelivery(EMAIL, "", address, class_name, None, note, earliest(None, class_name), name)
            )
            index = emails[address] = len(result.deliveries) - 1
        return index

    def cover(person: str, class_name: str, email: str, opted_out: bool, chat: int | None, note: Note) -> None:
        if chat is not None:
            result.coverage.append(Coverage(person, class_name, Route.CHAT, chat, email, note))
        elif email and not opted_out:
            index = add_email(email, person_names[person], class_name, note)
            result.coverage.append(Coverage(person, class_name, Route.EMAIL, index, email, note))
        else:  # the note keeps why no chat reaches them; the report adds "no e-mail" or "unsubscribed"
            result.coverage.append(Coverage(person, class_name, Route.NONE, None, email, note))

    person_names: dict[str, str] = {}
    parents_chat: dict[str, int] = {}  # class name -> its parents' chat delivery
    forwarded: set[str] = set()  # classes whose parents' chat waits for the class teacher's forward
    via_teachers = request.via_class_teachers
    for class_name in classes:
        cls = school.classes[class_name]
        groups: list[str] = []
        for kind, group in ((ChatKind.PARENTS, Group.PARENTS), (ChatKind.STUDENTS, Group.STUDENTS)):
            if group not in request.audience.groups:
                continue
            binding = cls.chats.get(kind)
            if binding is None or not usable(binding):
                result.gaps.append(Gap(class_name, kind, Note.NO_CHAT if binding is None else Note.CHAT_DEAD))
            elif via_teachers:
                groups.append(group.value)
                if kind is ChatKind.PARENTS:
                    forwarded.add(class_name)
            else:
                chat = add_chat(binding, class_name)
                if kind is ChatKind.PARENTS:
                    parents_chat[class_name] = chat
        if groups:
            due = deadline(class_name) if deadline is not None else earliest(None, class_name)
            result.tasks.append(ForwardingTask(class_name, cls.teacher, tuple(groups), due))

    # Every chat delivery is added before the first e-mail (they reach the most people per message, so they go
    # first): the teachers' chat too, though its staff are covered last.
    teachers = Group.TEACHERS in request.audience.groups
    staff_chat: int | None = None
    if teachers:
        binding = school.teachers_chat
        staff_chat = add_chat(binding, "") if binding is not None and usable(binding) else None
        if staff_chat is None:
            result.gaps.append(Gap("", ChatKind.TEACHERS, Note.NO_CHAT if binding is None else Note.CHAT_DEAD))

    # The chat that reaches a guardian: their own class's, or else any other audience class's they are in.
    reached_by: dict[str, int] = {}
    for class_name in classes:
        for guardian in by_class[class_name]:
            if guardian.classes[class_name] and class_name in parents_chat:
                reached_by.setdefault(guardian.key, parents_chat[class_name])
    for class_name in classes:
        binding = school.classes[class_name].chats.get(ChatKind.PARENTS)
        own = parents_chat.get(class_name)
        outside = Note.NOT_IN_CHAT if own is not None else (Note.NO_CHAT if binding is None else Note.CHAT_DEAD)
        for guardian in by_class[class_name]:
            person_names[guardian.key] = guardian.name
            if guardian.classes[class_name] and class_name in forwarded:
                result.coverage.append(
                    Coverage(guardian.key, class_name, Route.CHAT, None, guardian.email, Note.FORWARDING)
                )
            elif guardian.classes[class_name] and own is not None:
                cover(guardian.key, class_name, guardian.email, guardian.opted_out, own, Note.IN_CHAT)
            elif guardian.key in reached_by:
                other = reached_by[guardian.key]
                cover(guardian.key, class_name, guardian.email, guardian.opted_out, other, Note.IN_OTHER_CHAT)
            else:
                cover(guardian.key, class_name, guardian.email, guardian.opted_out, None, outside)

    if teachers:
        outside = Note.NO_CHAT if school.teachers_chat is None else Note.CHAT_DEAD
        for member in school.staff.values():
            person = f"staff:{member.id}"
            person_names[person] = member.name
            note = Note.IN_CHAT if staff_chat is not None else outside
            cover(person, "", member.email, False, staff_chat, note)

    return result
