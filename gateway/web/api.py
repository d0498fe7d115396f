"""The JSON API (/api/...): what the pages use for live progress, and what integrations call with a token.

Every handler works for the signed-in staff member only (`app.principal`), inside their own school; what a
class teacher may see or do is narrowed here (their classes, their tasks); who may call which route at all is
the route table's business (gateway.web.app). The document: /api/openapi.json (gateway.web.openapi).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway import jsontext
from gateway.app import Gateway
from gateway.domain import parse_number
from gateway.errors import InvalidInput, NotFound, PolicyViolation, Problem
from gateway.roster import parse_roster
from gateway.web import views
from gateway.web.app import JSON_LIMIT, principal
from gateway.web.auth import Principal
from gateway.web.openapi import SCHEMAS, document, validate
from gateway.webhooks import GATEWAY

MAX_KEY = 200


def path_id(request: web.Request, name: str = "id") -> int:
    number = parse_number(request.match_info.get(name, ""))
    if number is None:
        raise NotFound("нет такого номера")
    return number


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """The JSON body (at most 64 KiB), or a Russian 4xx."""
    if request.content_length is not None and request.content_length > JSON_LIMIT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=JSON_LIMIT,
            actual_size=request.content_length,
            reason=f"тело запроса больше {JSON_LIMIT // 1024} КиБ",
        )
    raw = await request.read()
    if len(raw) > JSON_LIMIT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=JSON_LIMIT, actual_size=len(raw), reason=f"тело запроса больше {JSON_LIMIT // 1024} КиБ"
        )
    if not raw.strip() and not required:
        return {}
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="ожидается тело application/json")
    try:
        return jsontext.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            reason=f"тело запроса — не JSON, не в UTF-8 или вложено глубже {jsontext.MAX_DEPTH} уровней"
        ) from None


def idempotency_key(who: Principal, raw: str) -> str:
    """The author's own key space: two people never share an announcement by choosing the same key."""
    raw = raw.strip()
    if len(raw) > MAX_KEY:
        raise InvalidInput([Problem("запрос", f"не длиннее {MAX_KEY} символов", None, "Idempotency-Key")])
    return f"{who.staff.id}:{raw}" if raw else ""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def openapi(request: web.Request) -> web.Response:
    return _json(document())


async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return _json(
        {
            "school": {"id": who.school.id, "name": who.school.name, "timezone": str(who.school.zone)},
            "staff": {
                "id": who.staff.id,
                "name": who.staff.name,
                "role": who.role.value,
                "role_label": who.role.label,
            },
            "classes": sorted(who.own_classes()),
            "via": who.via,
        }
    )


# ---------------------------------------------------------------------- announcements


async def list_announcements(request: web.Request) -> web.Response:
    limit = parse_number(request.query.get("limit", "50"))
    if limit is None or not 1 <= limit <= 200:
        raise InvalidInput([Problem("запрос", "ожидается число от 1 до 200", None, "limit")])
    gateway = request.app[GATEWAY]
    return _json({"announcements": await views.announcements(gateway, principal(request), limit)})


async def preview_announcement(request: web.Request) -> web.Response:
    who = principal(request)
    body = await read_json(request)
    req = views.announcement_request(who, body)
    gateway = request.app[GATEWAY]
    preview = await gateway.preview(req, check_chats=True)
    data = views.preview(preview, gateway, who.school.id)
    data["audience"] = req.audience.describe()
    return _json(data)


async def create_announcement(request: web.Request) -> web.Response:
    who = principal(request)
    body = await read_json(request)
    req = views.announcement_request(who, body, idempotency_key(who, request.headers.get("Idempotency-Key", "")))
    gateway = request.app[GATEWAY]
    posted = await gateway.post(req, check_chats=True)
    record = await gateway.announcement(posted.id)
    preview = views.preview(posted.preview, gateway, who.school.id)
    preview["audience"] = req.audience.describe()
    data = {
        "id": posted.id,
        "created": posted.created,
        "announcement": await views.announcement(gateway, record),
        "preview": preview,
    }
    return _json(data, status=201 if posted.created else 200)


async def get_announcement(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    record = await views.find(gateway, principal(request), path_id(request))
    return _json(await views.announcement(gateway, record))


async def announcement_progress(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    record = await views.find(gateway, principal(request), path_id(request))
    return _json(await views.progress(gateway, record.id))


async def report_data(request: web.Request) -> dict[str, Any]:
    gateway = request.app[GATEWAY]
    who = principal(request)
    record = await views.find(gateway, who, path_id(request))
    return await views.report(gateway, who, record, await gateway.report(record.id))


async def announcement_report(request: web.Request) -> web.Response:
    return _json(await report_data(request))


async def announcement_report_csv(request: web.Request) -> web.Response:
    data = await report_data(request)
    name = f"zvonok-{data['announcement']['id']}.csv"
    return web.Response(
        text=views.report_csv(data),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def cancel_announcement(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    who = principal(request)
    record = await views.find(gateway, who, path_id(request))
    cancelled = await gateway.store.cancel_announcement(record.id, who.staff.id, gateway.clock.now())
    record = await gateway.announcement(record.id)
    return _json({"id": record.id, "cancelled": cancelled, "announcement": await views.announcement(gateway, record)})


# ---------------------------------------------------------------------- forwarding


async def list_tasks(request: web.Request) -> web.Response:
    return _json({"tasks": await views.tasks(request.app[GATEWAY], principal(request))})


async def forward(request: web.Request, task_id: int, note: str) -> dict[str, Any]:
    """Forward a task of this person's (the administration: any of the school's), with a note."""
    gateway = request.app[GATEWAY]
    who = principal(request)
    task = next((t for t in await gateway.store.tasks(school_id=who.school.id) if t.id == task_id), None)
    if task is None or not (who.administration or task.teacher == who.staff.id):
        raise NotFound(f"задача пересылки № {task_id} не найдена")
    if task.status == "cancelled":
        raise PolicyViolation("объявление отменено: пересылать его не нужно")
    done = await gateway.forward(task.id, who.staff.id, note)
    return await views.task(gateway, done)


async def forward_task(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    problems = validate(SCHEMAS["ForwardInput"], body)
    if problems:
        raise InvalidInput(problems)
    return _json(await forward(request, path_id(request), str(body.get("note", ""))))


# ---------------------------------------------------------------------- chats, roster, journal


async def list_chats(request: web.Request) -> web.Response:
    return _json({"chats": await views.chats(request.app[GATEWAY], principal(request).school.id)})


async def check_chats(request: web.Request) -> web.Response:
    return _json(await views.check_chats(request.app[GATEWAY], principal(request).school.id))


async def read_csv(request: web.Request) -> bytes:
    if request.content_type != "text/csv":
        raise web.HTTPUnsupportedMediaType(reason="ожидается тело text/csv (выгрузка из электронного журнала)")
    return await request.read()


async def roster_preview(request: web.Request) -> web.Response:
    who = principal(request)
    gateway = request.app[GATEWAY]
    roster = parse_roster(await read_csv(request), who.school, source="список")
    return _json(views.roster_diff(await gateway.store.guardians(who.school.id), roster, who.school.id))


async def import_roster(request: web.Request, data: bytes) -> dict[str, Any]:
    """Preview and import a roster (one transaction), writing the audit log; what the API and the page answer."""
    who = principal(request)
    gateway = request.app[GATEWAY]
    roster = parse_roster(data, who.school, source="список")
    diff = views.roster_diff(await gateway.store.guardians(who.school.id), roster, who.school.id)
    change = await gateway.import_roster(who.school.id, roster)
    await gateway.store.add_audit(
        who.school.id,
        who.staff.id,
        "roster_import",
        f"список загружен: новых {change.added}, изменённых {change.updated}, выбывших {change.left}",
        gateway.clock.now(),
    )
    return {
        "added": change.added,
        "updated": change.updated,
        "left": change.left,
        "unchanged": change.unchanged,
        "preview": diff,
    }


async def roster_import(request: web.Request) -> web.Response:
    return _json(await import_roster(request, await read_csv(request)))


async def audit_log(request: web.Request) -> web.Response:
    return _json({"entries": await views.audit(request.app[GATEWAY], principal(request).school.id)})


async def alerts(request: web.Request) -> web.Response:
    return _json({"alerts": await views.alerts(request.app[GATEWAY], principal(request).school.id)})


# ---------------------------------------------------------------------- class windows, API tokens


def path_class(request: web.Request, who: Principal) -> str:
    """The class the path names ("7Б", "7б"), one of this person's school; NotFound otherwise."""
    return Gateway.find_class(who.school, request.match_info.get("name", ""))


def may_change_window(who: Principal, name: str) -> None:
    """403 unless this person may change the class's window: its class teacher, the administration, the IT admin."""
    if not who.school.may_set_class_window(who.staff.id, name):
        raise web.HTTPForbidden(
            reason=f"окно рассылки класса {name} меняет его классный руководитель, администрация или администратор"
        )


async def list_classes(request: web.Request) -> web.Response:
    return _json(await views.class_windows(request.app[GATEWAY], principal(request)))


async def set_class_window(request: web.Request) -> web.Response:
    who = principal(request)
    name = path_class(request, who)
    may_change_window(who, name)
    body = await read_json(request)
    problems = validate(SCHEMAS["ClassWindowInput"], body)
    if problems:
        raise InvalidInput(problems)
    gateway = request.app[GATEWAY]
    await gateway.set_class_window(who.school.id, name, body["start"], body["end"], who.staff.id)
    return _json(await views.one_class_window(gateway, who, name))


async def reset_class_window(request: web.Request) -> web.Response:
    who = principal(request)
    name = path_class(request, who)
    may_change_window(who, name)
    gateway = request.app[GATEWAY]
    _, removed = await gateway.reset_class_window(who.school.id, name, who.staff.id)
    return _json({"removed": removed, "class": await views.one_class_window(gateway, who, name)})


async def list_tokens(request: web.Request) -> web.Response:
    return _json({"tokens": await views.tokens(request.app[GATEWAY], principal(request))})


async def revoke_token(request: web.Request) -> web.Response:
    return _json(await views.revoke_token(request.app[GATEWAY], principal(request), path_id(request)))
