"""Who was reached and who was not: per announcement, per class, per guardian.

Every guardian of the audience lands in exactly one bucket:
    in_chat      the class's parents' chat has the message
    emailed      the e-mail was accepted by the mail server
    pending      still on its way (queued, retrying, or waiting for the window)
    bounced      the e-mail was refused for good — phone them
    unreachable  no working chat and no e-mail (or unsubscribed) — phone them
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

from gateway.domain import EMAIL, FINAL_STATUSES, ChatKind, Kind, School, Status
from gateway.planner import NOTE_LABELS, Note
from gateway.store.base import AnnouncementRecord, CoverageRow, DeliveryRow, GapRow, Store, TaskRow

BUCKETS = ("in_chat", "emailed", "pending", "bounced", "unreachable")
BUCKET_LABELS = {
    "in_chat": "в чате",
    "emailed": "письмом",
    "pending": "в пути",
    "bounced": "письмо не доставлено",
    "unreachable": "без связи",
}


@dataclass(frozen=True, slots=True)
class ChatLine:
    class_name: str
    kind: str
    channel: str
    status: Status
    error: str


@dataclass(frozen=True, slots=True)
class PersonLine:
    class_name: str
    name: str
    phone: str
    students: str
    bucket: str
    reason: str
    acknowledged: bool = False  # pressed «Ознакомлен» in the letter
    opted_out: bool = False  # unsubscribed from the letters


@dataclass(slots=True)
class ClassReport:
    name: str
    teacher: str
    chats: list[ChatLine] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    people: list[PersonLine] = field(default_factory=list)
    forwarding: str = ""  # through class teachers: forwarded when and by whom, or late

    def counts(self) -> Counter[str]:
        return Counter(p.bucket for p in self.people)

    def to_call(self) -> list[PersonLine]:
        return [p for p in self.people if p.bucket in ("bounced", "unreachable")]


@dataclass(slots=True)
class Report:
    announcement: AnnouncementRecord
    school: School
    totals: Counter[Status]
    chats_total: int
    chats_delivered: int
    emails_total: int
    emails_delivered: int
    classes: list[ClassReport]

    @property
    def complete(self) -> bool:
        return all(status in FINAL_STATUSES for status in self.totals.elements())

    @property
    def finished(self) -> int:
        return sum(n for status, n in self.totals.items() if status in FINAL_STATUSES)

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for cls in self.classes:
            total.update(cls.counts())
        return total

    def to_call(self) -> list[PersonLine]:
        return [p for cls in self.classes for p in cls.to_call()]


async def build_report(store: Store, school: School, announcement: AnnouncementRecord) -> Report:
    deliveries = await store.deliveries(announcement.id)
    coverage = await store.coverage(announcement.id)
    gaps = await store.gaps(announcement.id)
    acknowledged = set(await store.acknowledgements(announcement.id))
    report = assemble(school, announcement, deliveries, coverage, gaps, acknowledged)
    tasks = await store.tasks(announcement_id=announcement.id)
    by_name = {c.name: c for c in report.classes}
    for task in tasks:
        cls = by_name.get(task.class_name)
        if cls is not None:
            cls.forwarding = forwarding_line(school, task)
    return report


def forwarding_line(school: School, task: TaskRow) -> str:
    """How a class's forwarding task stands, in Russian."""
    deadline = task.deadline.astimezone(school.zone)
    who = school.staff[task.done_by].name if task.done_by in school.staff else task.done_by
    if task.status == "open":
        return f"ждёт пересылки классным руководителем до {deadline:%d.%m %H:%M}"
    if task.status == "escalated":
        return f"не переслано до {deadline:%d.%m %H:%M} — сообщено автору объявления"
    if task.status == "cancelled":
        return "не переслано: объявление отменено"
    assert task.done_at is not None
    done = task.done_at.astimezone(school.zone)
    late = " (после срока)" if task.done_at > task.deadline else ""
    if task.status == "auto_forwarded":
        return f"переслано автоматически в {done:%d.%m %H:%M} (срок истёк)"
    note = f", с комментарием «{task.note}»" if task.note else ""
    return f"переслано {done:%d.%m %H:%M} ({who}){late}{note}"


def assemble(
    school: School,
    announcement: AnnouncementRecord,
    deliveries: list[DeliveryRow],
    coverage: list[CoverageRow],
    gaps: list[GapRow],
    acknowledged: Collection[int] = (),
) -> Report:
    classes: dict[str, ClassReport] = {}

    def class_report(name: str) -> ClassReport:
        if name not in classes:
            cls = school.classes.get(name)
            teacher = school.staff[cls.teacher].name if cls and cls.teacher in school.staff else ""
            classes[name] = ClassReport(name or "учителя", teacher)
        return classes[name]

    chats = [d for d in deliveries if d.channel != EMAIL]
    emails = [d for d in deliveries if d.channel == EMAIL]
    for d in chats:
        class_report(d.class_name).chats.append(ChatLine(d.class_name, d.chat_kind, d.channel, d.status, d.last_error))
    for g in gaps:
        label = ChatKind(g.chat_kind).label if g.chat_kind in ChatKind.__members__.values() else g.chat_kind
        class_report(g.class_name).gaps.append(f"{label}: {NOTE_LABELS.get(Note(g.note), g.note)}")
    for row in coverage:
        bucket, reason = _bucket(row)
        name = row.name or _staff_name(school, row.person)
        class_report(row.class_name).people.append(
            PersonLine(
                row.class_name,
                name,
                row.phone,
                row.students,
                bucket,
                reason,
                acknowledged=row.delivery_id is not None and row.delivery_id in acknowledged,
                opted_out=row.opted_out,
            )
        )
    order = {name: i for i, name in enumerate(school.classes)}
    return Report(
        announcement=announcement,
        school=school,
        totals=Counter({status: n for status, n in Counter(d.status for d in deliveries).items()}),
        chats_total=len(chats),
        chats_delivered=sum(1 for d in chats if d.status is Status.DELIVERED),
        emails_total=len(emails),
        emails_delivered=sum(1 for d in emails if d.status is Status.DELIVERED),
        classes=sorted(classes.values(), key=lambda c: order.get(c.name, len(order))),
    )


def _bucket(row: CoverageRow) -> tuple[str, str]:
    note = NOTE_LABELS.get(Note(row.note), row.note) if row.note in Note.__members__.values() else row.note
    if row.route == "none":
        missing = "отписался от писем" if row.opted_out and row.email else "нет e-mail"
        return "unreachable", f"{note}; {missing}"
    status = row.delivery_status
    if status is Status.DELIVERED:
        return ("in_chat", note) if row.route == "chat" else ("emailed", note)
    if status is Status.PERMANENT_FAILURE:
        return "bounced", row.delivery_error or "письмо отклонено почтовым сервером"
    if status is Status.CANCELLED:
        return "unreachable", "отправка отменена"
    return "pending", (status.label if status else "ожидает")


def _staff_name(school: School, person: str) -> str:
    member = school.staff.get(person.removeprefix("staff:"))
    return member.name if member else person


def render_text(report: Report) -> str:
    """The report as the CLI prints it (Russian, plain text)."""
    a = report.announcement
    kind = Kind(a.kind).label if a.kind in Kind.__members__.values() else a.kind
    local = a.created_at.astimezone(report.school.zone)
    lines = [
        f"Объявление № {a.id} · {kind} · «{a.title}»",
        f"{report.school.name} · {a.audience_label} · создано {local:%d.%m.%Y %H:%M}",
        f"Доставки: завершено {report.finished} из {sum(report.totals.values())}"
        f" (чаты {report.chats_delivered}/{report.chats_total},"
        f" письма {report.emails_delivered}/{report.emails_total})",
    ]
    totals = report.counts()
    if totals:
        lines.append("Представители: " + ", ".join(f"{BUCKET_LABELS[b]} {totals.get(b, 0)}" for b in BUCKETS))
    for cls in report.classes:
        head = f"Класс {cls.name}" if cls.name != "учителя" else "Учителя"
        lines.append("")
        lines.append(head + (f" (кл. рук. {cls.teacher})" if cls.teacher else ""))
        for chat in cls.chats:
            kind_label = ChatKind(chat.kind).label if chat.kind else "чат"
            detail = f" — {chat.error}" if chat.error and chat.status is not Status.DELIVERED else ""
            lines.append(f"  {kind_label} {chat.channel.upper()}: {chat.status.label}{detail}")
        for gap in cls.gaps:
            lines.append(f"  {gap}")
        if cls.forwarding:
            lines.append(f"  пересылка: {cls.forwarding}")
        counts = cls.counts()
        if cls.people:
            lines.append(
                f"  {'Родители' if cls.name != 'учителя' else 'Сотрудники'}: {len(cls.people)} — "
                + ", ".join(f"{BUCKET_LABELS[b]} {counts.get(b, 0)}" for b in BUCKETS)
            )
    calls = report.to_call()
    if calls:
        lines.append("")
        lines.append("Позвонить (сообщение не дошло):")
        for p in calls:
            who = f" (ученик: {p.students})" if p.students else ""
            lines.append(f"  {p.class_name or '—'}  {p.name}  {p.phone or 'телефон не указан'}{who} — {p.reason}")
    return "\n".join(lines)
