"""What the API and the pages show: announcements, previews, progress, reports, tasks, chats, roster changes.

Plain dicts of JSON types (the API sends them as they are; the templates read them), shaped as the OpenAPI
schemas of gateway.web.openapi say. A class teacher sees only their own classes of a report, and of the class
windows; a staff member sees only their own API tokens, the IT admin the school's.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from gateway.app import Gateway, Preview
from gateway.domain import (
    EMAIL,
    FINAL_STATUSES,
    AnnouncementRequest,
    Audience,
    ChatKind,
    Group,
    Guardian,
    Kind,
    Role,
    School,
    Status,
)
from gateway.errors import InvalidInput, NotFound, Problem
from gateway.lint import Rule
from gateway.reports import BUCKET_LABELS, BUCKETS, PersonLine, Report
from gateway.roster import Roster
from gateway.store.base import AnnouncementRecord, ClassWindowRow, TaskRow, TokenRow
from gateway.web import auth
from gateway.web.auth import Principal
from gateway.web.openapi import SCHEMAS, validate
from schedules.windows import MessagingWindow

Json = dict[str, Any]

TASK_LABELS = {
    "open": "ждёт пересылки",
    "forwarded": "переслано",
    "auto_forwarded": "переслано автоматически",
    "escalated": "срок истёк, передано завучу",
    "cancelled": "объявление отменено",
}


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def kind_label(kind: str) -> str:
    return Kind(kind).label if kind in Kind.__members__.values() else kind


# ---------------------------------------------------------------------- requests


def announcement_request(principal: Principal, body: Mapping[str, Any], key: str = "") -> AnnouncementRequest:
    """An AnnouncementRequest from a body shaped as the AnnouncementInput schema (checked here, in Russian)."""
    problems = validate(SCHEMAS["AnnouncementInput"], body)
    if problems:
        raise InvalidInput(problems)
    send_at = None
    if body.get("send_at"):
        send_at = datetime.fromisoformat(str(body["send_at"]).replace("Z", "+00:00").replace("z", "+00:00"))
    return AnnouncementRequest(
        school_id=principal.school.id,
        author=principal.staff.id,
        kind=Kind(body.get("kind", Kind.GENERAL.value)),
        title=str(body["title"]).strip(),
        text=str(body["text"]),
        audience=Audience(
            frozenset(Group(g) for g in body["groups"]),
            frozenset(int(p) for p in body.get("parallels", [])),
            frozenset(_class_name(c) for c in body.get("classes", [])),
        ),
        send_at=send_at,
        idempotency_key=key,
        reason=str(body.get("reason", "")),
        via_class_teachers=bool(body.get("via_class_teachers", False)),
    )


def _class_name(raw: str) -> str:
    from gateway.domain import parse_class_name

    parsed = parse_class_name(raw)
    if parsed is None:
        raise InvalidInput([Problem("запрос", f"«{raw[:20]}» не похоже на класс (например, 7Б)", None, "classes")])
    return parsed[0]


# ---------------------------------------------------------------------- announcements


async def visible(gateway: Gateway, principal: Principal, record: AnnouncementRecord) -> bool:
    """May this person see the announcement: the administration all of their school's, a class teacher those
    they wrote or that reach one of their classes."""
    if record.school_id != principal.school.id:
        return False
    if principal.administration or record.author == principal.staff.id:
        return True
    return bool(await classes_of(gateway, record.id) & principal.own_classes())


async def classes_of(gateway: Gateway, announcement_id: int) -> set[str]:
    names = {d.class_name for d in await gateway.store.deliveries(announcement_id)}
    names |= {g.class_name for g in await gateway.store.gaps(announcement_id)}
    names |= {t.class_name for t in await gateway.store.tasks(announcement_id=announcement_id)}
    return names - {""}


async def find(gateway: Gateway, principal: Principal, announcement_id: int) -> AnnouncementRecord:
    """The announcement, if this person may see it; NotFound otherwise (nothing tells it exists)."""
    record = await gateway.store.announcement(announcement_id)
    if record is None or not await visible(gateway, principal, record):
        raise NotFound(f"объявление № {announcement_id} не найдено")
    return record


async def progress(gateway: Gateway, announcement_id: int) -> Json:
    counts = await gateway.store.progress(announcement_id)
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
    return {
        "id": announcement_id,
        "total": total,
        "done": done,
        "delivered": counts.get(Status.DELIVERED, 0),
        "failed": counts.get(Status.PERMANENT_FAILURE, 0),
        "cancelled": counts.get(Status.CANCELLED, 0),
        "complete": done == total,
    }


async def announcement(gateway: Gateway, record: AnnouncementRecord) -> Json:
    school = gateway.config.school(record.school_id)
    author = school.staff.get(record.author)
    return {
        "id": record.id,
        "title": record.title,
        "text": record.text,
        "kind": record.kind,
        "kind_label": kind_label(record.kind),
        "audience": record.audience_label,
        "author": record.author,
        "author_name": author.name if author else record.author,
        "created_at": iso(record.created_at),
        "send_at": iso(record.send_at),
        "cancelled_at": iso(record.cancelled_at),
        "progress": await progress(gateway, record.id),
    }


async def announcements(gateway: Gateway, principal: Principal, limit: int = 50) -> list[Json]:
    out = []
    for record in await gateway.store.announcements(principal.school.id, limit=limit):
        if await visible(gateway, principal, record):
            out.append(await announcement(gateway, record))
    return out


def preview(p: Preview, gateway: Gateway, school_id: str) -> Json:
    plan = p.plan
    chats: Counter[str] = Counter(d.channel for d in plan.deliveries if d.channel != EMAIL)
    held = [d.not_before for d in plan.deliveries if d.held]
    school = gateway.config.school(school_id)
    gaps = []
    for g in plan.gaps:
        where = f"{g.class_name}: " if g.class_name else ""
        gaps.append(
            f"{where}{g.chat_kind.label} — {'нет такого чата' if g.note.value == 'no_chat' else 'чат недоступен'}"
        )
    return {
        "audience": "",
        "recipients": {
            "chats": dict(chats),
            "emails": plan.count(EMAIL),
            "unreachable": len(plan.unreachable()),
            "guardians": len({c.person for c in plan.coverage if not c.person.startswith("staff:")}),
        },
        "gaps": gaps,
        "tasks": [
            {
                "class_name": t.class_name,
                "teacher": school.staff[t.teacher].name if t.teacher in school.staff else "",
                "deadline": iso(t.deadline),
            }
            for t in plan.tasks
        ],
        "held_until": iso(min(held)) if held else None,
        "estimate": {
            "last": iso(p.estimate.last),
            "by_channel": {k: v.isoformat() for k, v in sorted(p.estimate.by_channel.items())},
        },
        "warnings": list(p.estimate.warnings),
        "findings": [
            {
                "rule": f.rule.value,
                "label": f.rule.label,
                "message": f.message,
                "blocking": f.blocking,
                "excerpt": f.excerpt,
            }
            for f in p.findings
        ],
        "blocked": bool(p.blocking),
        "audit": p.audit,
    }


# ---------------------------------------------------------------------- reports


def person(p: PersonLine) -> Json:
    return {
        "name": p.name,
        "phone": p.phone,
        "students": p.students,
        "bucket": p.bucket,
        "bucket_label": BUCKET_LABELS.get(p.bucket, p.bucket),
        "reason": p.reason,
        "acknowledged": p.acknowledged,
        "opted_out": p.opted_out,
    }


def shown_classes(report: Report, principal: Principal) -> list[Any]:
    """The administration sees every class of a report; a class teacher only their own."""
    if principal.administration:
        return list(report.classes)
    own = principal.own_classes()
    return [c for c in report.classes if c.name in own]


async def report(gateway: Gateway, principal: Principal, record: AnnouncementRecord, built: Report) -> Json:
    classes = []
    counts: Counter[str] = Counter()
    for cls in shown_classes(built, principal):
        cls_counts = cls.counts()
        counts.update(cls_counts)
        classes.append(
            {
                "name": cls.name,
                "teacher": cls.teacher,
                "chats": [
                    {
                        "kind": c.kind,
                        "channel": c.channel,
                        "status": c.status.value,
                        "status_label": c.status.label,
                        "error": c.error if c.status is not Status.DELIVERED else "",
                    }
                    for c in cls.chats
                ],
                "gaps": list(cls.gaps),
                "forwarding": cls.forwarding,
                "counts": {b: cls_counts.get(b, 0) for b in BUCKETS},
                "acknowledged": sum(1 for p in cls.people if p.acknowledged),
                "opted_out": sum(1 for p in cls.people if p.opted_out),
                "people": [person(p) for p in cls.people],
                "to_call": [person(p) for p in cls.to_call()],
            }
        )
    return {
        "announcement": await announcement(gateway, record),
        "complete": built.complete,
        "chats": {"total": built.chats_total, "delivered": built.chats_delivered},
        "emails": {"total": built.emails_total, "delivered": built.emails_delivered},
        "counts": {b: counts.get(b, 0) for b in BUCKETS},
        "classes": classes,
    }


def report_csv(data: Json) -> str:
    """One row per guardian (and class): for the class teacher's phone calls and the school's records."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Класс", "Представитель", "Ученик", "Телефон", "Как дошло", "Причина", "Ознакомлен", "Отписан"])
    for cls in data["classes"]:
        for p in cls["people"]:
            writer.writerow(
                [
                    cls["name"],
                    _cell(p["name"]),
                    _cell(p["students"]),
                    _cell(p["phone"]),
                    p["bucket_label"],
                    _cell(p["reason"]),
                    "да" if p["acknowledged"] else "нет",
                    "да" if p["opted_out"] else "нет",
                ]
            )
    return "\ufeff" + out.getvalue()


def _cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection): any value that begins as a formula can,
    "=1+2" or "-2+3+cmd|…" as much as "=HYPERLINK(…)", so each is prefixed with an apostrophe, which spreadsheets
    show as text and do not display (a phone number "+7 …" keeps its digits)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# ---------------------------------------------------------------------- tasks, chats, audit


async def task(gateway: Gateway, row: TaskRow) -> Json:
    record = await gateway.store.announcement(row.announcement_id)
    return {
        "id": row.id,
        "announcement_id": row.announcement_id,
        "title": record.title if record else "",
        "text": record.text if record else "",
        "class_name": row.class_name,
        "teacher": row.teacher,
        "groups": list(row.groups),
        "deadline": iso(row.deadline),
        "status": row.status,
        "status_label": TASK_LABELS.get(row.status, row.status),
        "note": row.note,
        "done_at": iso(row.done_at),
        "done_by": row.done_by,
    }


async def tasks(gateway: Gateway, principal: Principal) -> list[Json]:
    teacher = None if principal.administration else principal.staff.id
    rows = await gateway.store.tasks(school_id=principal.school.id, teacher=teacher)
    rows.sort(key=lambda t: (t.status != "open", t.deadline, t.id))
    return [await task(gateway, t) for t in rows]


async def chats(gateway: Gateway, school_id: str) -> list[Json]:
    view = await gateway.school_view(school_id)
    in_use = {(c.channel, c.address) for c in view.chats()}
    out = []
    for row in await gateway.store.chats(school_id):
        label = ChatKind(row.kind).label if row.kind in ChatKind.__members__.values() else "не привязан"
        out.append(
            {
                "channel": row.channel,
                "address": row.address,
                "class_name": row.class_name,
                "kind": row.kind,
                "kind_label": label,
                "title": row.title,
                "status": row.status,
                "status_reason": row.status_reason,
                "source": row.source,
                "updated_at": iso(row.updated_at),
                "checked_at": iso(row.checked_at),
                "in_use": (row.channel, row.address) in in_use,
            }
        )
    return out


async def check_chats(gateway: Gateway, school_id: str) -> Json:
    results = []
    broken = 0
    for r in await gateway.check_chats(school_id):
        ok = None if r.health is None else r.health.ok
        broken += ok is False
        results.append(
            {
                "channel": r.binding.channel,
                "address": r.binding.address,
                "class_name": r.class_name,
                "kind": r.binding.kind.value,
                "ok": ok,
                "explanation": r.error if r.health is None else r.health.explanation,
            }
        )
    return {"results": results, "broken": broken}


async def audit(gateway: Gateway, school_id: str) -> list[Json]:
    school = gateway.config.school(school_id)
    return [
        {
            "id": row.id,
            "at": iso(row.at),
            "actor": row.actor,
            "actor_name": school.staff[row.actor].name if row.actor in school.staff else row.actor,
            "action": row.action,
            "announcement_id": row.announcement_id,
            "details": row.details,
        }
        for row in await gateway.store.audit_log(school_id)
    ]


async def alerts(gateway: Gateway, school_id: str) -> list[Json]:
    return [
        {"id": a.id, "created_at": iso(a.created_at), "kind": a.kind, "subject": a.subject, "message": a.message}
        for a in await gateway.store.alerts(school_id)
    ]


# ---------------------------------------------------------------------- roster


def _roster_person(g: Guardian, detail: str = "") -> Json:
    return {"name": g.name, "classes": sorted(g.classes), "email": g.email, "phone": g.phone, "detail": detail}


def roster_diff(current: Iterable[Guardian], roster: Roster, school_id: str) -> Json:
    """What importing `roster` would change: who is new, who changed, who left (to be removed from the chats)."""
    before = {g.key: g for g in current}
    after = {g.key: g for g in roster.guardians(school_id)}
    added = [_roster_person(g) for k, g in after.items() if k not in before]
    changed = []
    unchanged = 0
    for k, g in after.items():
        old = before.get(k)
        if old is None:
            continue
        what = []
        if (old.name, old.phone) != (g.name, g.phone):
            what.append("ФИО или телефон")
        if set(old.classes) != set(g.classes):
            what.append(f"классы: {', '.join(sorted(old.classes))} → {', '.join(sorted(g.classes))}")
        joined = [c for c in g.classes if g.classes[c] and not old.classes.get(c, False)]
        gone = [c for c in old.classes if old.classes[c] and not g.classes.get(c, False)]
        if joined:
            what.append(f"вступил(а) в чат {', '.join(sorted(joined))}")
        if gone:
            what.append(f"больше не в чате {', '.join(sorted(gone))}")
        if what:
            changed.append(_roster_person(g, "; ".join(what)))
        else:
            unchanged += 1
    left = []
    for k, g in before.items():
        if k not in after:
            chats = sorted(c for c, in_chat in g.classes.items() if in_chat)
            detail = f"удалите из чата родителей {', '.join(chats)}" if chats else "в чатах класса не состоял(а)"
            left.append(_roster_person(g, detail))
    return {
        "rows": len(roster.entries),
        "guardians": len(after),
        "added": sorted(added, key=lambda p: p["name"]),
        "changed": sorted(changed, key=lambda p: p["name"]),
        "left": sorted(left, key=lambda p: p["name"]),
        "unchanged": unchanged,
        "warnings": [str(w) for w in roster.warnings],
    }


# ---------------------------------------------------------------------- settings: class windows, API tokens

WINDOW_SOURCES = {
    "class": "задано на сайте",
    "config": "из файла школы",
    "school": "окно школы",
}
DEADLINE_ACTIONS = {"escalate": "передать автору объявления (завучу)", "auto": "переслать автоматически"}


def window(w: MessagingWindow) -> Json:
    return {"start": f"{w.start:%H:%M}", "end": f"{w.end:%H:%M}"}


def window_classes(principal: Principal) -> list[str]:
    """The classes whose windows this person sees: all of the school's for the administration and the IT admin,
    their own for a class teacher, none for anyone else."""
    if principal.administration or principal.role is Role.ADMIN:
        return list(principal.school.classes)
    if principal.role is Role.CLASS_TEACHER:
        own = principal.own_classes()
        return [name for name in principal.school.classes if name in own]
    return []


def class_window(
    configured: School, current: School, name: str, row: ClassWindowRow | None, principal: Principal
) -> Json:
    """One class's chat window: what applies now and where it comes from (set at run time, the school file, the
    school's window), and whether this person may change it."""
    cls = configured.classes[name]
    effective = current.window_for(name)
    if row is not None and configured.window.contains(row.window):  # else the school file changed since: ignored
        source = "class"
    elif cls.window is not None:
        source = "config"
    else:
        source = "school"
    teacher = configured.staff.get(cls.teacher)
    override = None
    if row is not None:
        setter = configured.staff.get(row.set_by)
        override = {
            **window(row.window),
            "set_by": row.set_by,
            "set_by_name": setter.name if setter else row.set_by,
            "set_at": iso(row.set_at),
            "applied": source == "class",
        }
    return {
        "name": name,
        "teacher": cls.teacher,
        "teacher_name": teacher.name if teacher else "",
        "window": window(effective),
        "source": source,
        "source_label": WINDOW_SOURCES[source],
        "configured": window(cls.window) if cls.window is not None else None,
        "override": override,
        "may_change": configured.may_set_class_window(principal.staff.id, name),
    }


async def class_windows(gateway: Gateway, principal: Principal) -> Json:
    school = principal.school
    rows = await gateway.class_windows(school.id)
    current = gateway.current_school(school.id)
    return {
        "school_window": window(school.window),
        "classes": [class_window(school, current, n, rows.get(n), principal) for n in window_classes(principal)],
    }


async def one_class_window(gateway: Gateway, principal: Principal, name: str) -> Json:
    school = principal.school
    rows = await gateway.class_windows(school.id)
    return class_window(school, gateway.current_school(school.id), name, rows.get(name), principal)


def token(school: School, row: TokenRow, principal: Principal) -> Json:
    """What is shown of an API token: never the token itself (only its hash is kept, and not shown either)."""
    owner = school.staff.get(row.staff_id)
    return {
        "id": row.id,
        "staff_id": row.staff_id,
        "staff_name": owner.name if owner else row.staff_id,
        "label": row.label,
        "created_at": iso(row.created_at),
        "revoked_at": iso(row.revoked_at),
        "active": row.revoked_at is None,
        "mine": row.staff_id == principal.staff.id,
    }


async def visible_tokens(gateway: Gateway, principal: Principal) -> list[TokenRow]:
    """A staff member's own API tokens; the IT admin's view: every token of the school."""
    rows = await gateway.store.api_tokens(principal.school.id)
    if principal.role is Role.ADMIN:
        return rows
    return [r for r in rows if r.staff_id == principal.staff.id]


async def tokens(gateway: Gateway, principal: Principal) -> list[Json]:
    return [token(principal.school, r, principal) for r in await visible_tokens(gateway, principal)]


async def revoke_token(gateway: Gateway, principal: Principal, token_id: int) -> Json:
    """Revoke one of this person's tokens (the IT admin: any of the school's); NotFound for a token they may not
    see (nothing tells it exists)."""
    if not any(r.id == token_id for r in await visible_tokens(gateway, principal)):
        raise NotFound(f"токен API № {token_id} не найден")
    row, revoked = await auth.revoke_token(gateway, principal.school, token_id, principal.staff.id)
    return {"revoked": revoked, "token": token(principal.school, row, principal)}


def school_settings(gateway: Gateway, school: School) -> Json:
    """The school's settings as its file has them (read-only here: they change in the school file)."""
    lint = gateway.config.lint_settings(school.id)
    calendar = school.calendar
    return {
        "id": school.id,
        "name": school.name,
        "timezone": str(school.zone),
        "window": str(school.window),
        "six_day_week": calendar.six_day_week,
        "vacations": [f"{v.name}: {v.first:%d.%m.%Y}–{v.last:%d.%m.%Y}" for v in calendar.vacations],
        "overrides": [
            f"{o.day:%d.%m.%Y}: {'учебный день' if o.school_day else 'выходной'} — {o.reason}"
            for o in calendar.overrides
        ],
        "email_in_window": school.email_in_window,
        "forwarding_deadline": DEADLINE_ACTIONS.get(school.forwarding_deadline, school.forwarding_deadline),
        "lint_rules": [{"rule": r.value, "label": r.label, "blocking": r in lint.blocking} for r in Rule],
        "lint_max_length": lint.max_length,
        "file": f"schools/{school.id}.yaml",
    }
