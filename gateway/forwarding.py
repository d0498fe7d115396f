"""Forwarding by class teachers: the regulations have the class teacher pass the administration's announcements
on to the class chats within the school day.

An announcement routed through class teachers gets one task per class (gateway.planner). The class teacher —
or the director or a deputy in their place — forwards it, optionally with a note; that creates the class's chat
deliveries, held to the class window. At the deadline (the end of that school day's window) the school's
`forwarding_deadline` decides: `auto` forwards it unchanged, `escalate` marks the tasks late, alerts the admin
and e-mails the author the list of classes. Every step is one store transaction that succeeds once, so the
deadline job may run in several processes at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.domain import EMAIL, ChatKind, Kind, Role, has_control_characters
from gateway.errors import InvalidInput, NotFound, PolicyViolation, Problem, Unprocessable
from gateway.lint import lint
from gateway.planner import Note, PlannedDelivery
from gateway.store.base import TaskRow
from schedules.windows import next_allowed

if TYPE_CHECKING:
    from gateway.app import Gateway

MAX_NOTE = 1000  # characters in a class teacher's note


async def forward(gateway: Gateway, task_id: int, actor: str, note: str = "", *, automatic: bool = False) -> TaskRow:
    """The class teacher (or the administration) forwards a task to the class's chats, with an optional note."""
    task = next((t for t in await gateway.store.tasks() if t.id == task_id), None)
    if task is None:
        raise NotFound(f"задача пересылки № {task_id} не найдена")
    school = await gateway.school_view(task.school_id)
    note = note.strip()
    if not automatic:
        member = school.staff.get(actor)
        if member is None:
            raise PolicyViolation(f"сотрудник «{actor}» не найден в школе «{school.name}»")
        if member.id != task.teacher and member.role not in (Role.DIRECTOR, Role.DEPUTY):
            raise PolicyViolation(
                f"переслать объявление классу {task.class_name} может только его классный руководитель"
            )
        if len(note) > MAX_NOTE:
            raise InvalidInput([Problem("пересылка", f"комментарий длиннее {MAX_NOTE} символов", None, "note")])
        if has_control_characters(note):
            message = "недопустимый управляющий символ (например, NUL): удалите его"
            raise Unprocessable([Problem("пересылка", message, None, "note")])
        blocking = [f for f in lint("", note, gateway.config.lint_settings(school.id)) if f.blocking] if note else []
        if blocking:
            raise PolicyViolation("комментарий нарушает правила школы: " + "; ".join(f.message for f in blocking))
    if task.status not in ("open", "escalated"):
        raise PolicyViolation(f"объявление уже переслано классу {task.class_name}")
    record = await gateway.announcement(task.announcement_id)
    dead = await gateway.store.dead_chats(school.id)
    now = gateway.clock.now()
    urgent = record.kind == Kind.FORCE_MAJEURE.value
    window = school.window_for(task.class_name)
    when = now if urgent else next_allowed(now, zone=school.zone, window=window, calendar=school.calendar)
    deliveries = []
    for group in task.groups:
        binding = school.classes[task.class_name].chats.get(ChatKind(group))
        if binding is not None and (binding.channel, binding.address) not in dead:
            deliveries.append(
                PlannedDelivery(
                    binding.channel, binding.account, binding.address, task.class_name, binding.kind,
                    Note.IN_CHAT, when, held=when > now,
                )
            )  # fmt: skip
    status = "auto_forwarded" if automatic else "forwarded"
    if not await gateway.store.forward(task.id, actor=actor, note=note, status=status, deliveries=deliveries, now=now):
        raise PolicyViolation(f"объявление уже переслано классу {task.class_name}")
    gateway.dispatcher.wake()
    return next(t for t in await gateway.store.tasks(announcement_id=task.announcement_id) if t.id == task.id)


async def handle_overdue(gateway: Gateway) -> int:
    """At a forwarding deadline, do what each school configured: forward automatically, or escalate to the
    author (an alert and a letter). Safe to run in several processes at once: each task is handled once."""
    now = gateway.clock.now()
    handled = 0
    overdue = [t for t in await gateway.store.tasks() if t.status == "open" and t.deadline <= now]
    by_announcement: dict[int, list[TaskRow]] = {}
    for task in overdue:
        by_announcement.setdefault(task.announcement_id, []).append(task)
    for announcement_id, tasks in by_announcement.items():
        record = await gateway.announcement(announcement_id)
        school = gateway.config.school(record.school_id)
        if school.forwarding_deadline == "auto":
            for task in tasks:
                try:
                    await forward(gateway, task.id, "система", automatic=True)
                    handled += 1
                except PolicyViolation:  # another process forwarded it first
                    continue
            continue
        late = ", ".join(
            f"{t.class_name} ({school.staff[t.teacher].name if t.teacher in school.staff else 'нет кл. рук.'})"
            for t in tasks
        )
        alert = f"Объявление № {announcement_id} «{record.title}» не переслано классам в срок: {late}"
        escalated = await gateway.store.escalate([t.id for t in tasks], now, alert)
        handled += len(escalated)
        author = school.staff.get(record.author)
        if escalated and author is not None and author.email:
            letter = PlannedDelivery(EMAIL, "", author.email, "", None, Note.ESCALATION, now, author.name)
            await gateway.store.add_deliveries(announcement_id, [letter], now, addendum=alert)
            gateway.dispatcher.wake()
    return handled
