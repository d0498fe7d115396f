"""The OpenAPI 3 document of the app (served at /api/openapi.json), and the validator of request bodies.

Request bodies are checked against the very schemas the document publishes (`validate`), so the document cannot
drift from what the API accepts; tests/test_web_api.py checks that every route of the app is documented (and
nothing else), and that responses match their schemas. Errors are Russian, one per field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateway.domain import Group, Kind
from gateway.errors import Problem
from gateway.forwarding import MAX_NOTE
from gateway.policy import MAX_TEXT, MAX_TITLE

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
COUNTS: Schema = {"type": "object", "additionalProperties": INT}


def obj(properties: Mapping[str, Schema], *, required: list[str] | None = None, closed: bool = True) -> Schema:
    out: Schema = {"type": "object", "properties": dict(properties)}
    out["required"] = list(properties) if required is None else required
    if closed:
        out["additionalProperties"] = False
    return out


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


KINDS = [k.value for k in Kind]
GROUPS = [g.value for g in Group]

SCHEMAS: dict[str, Schema] = {
    "Problem": obj({"field": STR, "message": STR}),
    "Error": obj({"error": STR, "code": STR, "problems": array(ref("Problem"))}, required=["error", "code"]),
    "Me": obj(
        {
            "school": obj({"id": STR, "name": STR, "timezone": STR}),
            "staff": obj({"id": STR, "name": STR, "role": STR, "role_label": STR}),
            "classes": array(STR),
            "via": {"type": "string", "enum": ["session", "token"]},
        }
    ),
    "AnnouncementInput": obj(
        {
            "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE},
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
            "kind": {"type": "string", "enum": KINDS},
            "groups": array({"type": "string", "enum": GROUPS}, minItems=1, maxItems=3, uniqueItems=True),
            "parallels": array({"type": "integer", "minimum": 1, "maximum": 11}, maxItems=11, uniqueItems=True),
            "classes": array({"type": "string", "minLength": 1, "maxLength": 8}, maxItems=100, uniqueItems=True),
            "send_at": _nullable(TIME),
            "via_class_teachers": BOOL,
            "reason": {"type": "string", "maxLength": 500},
        },
        required=["title", "text", "groups"],
    ),
    "Finding": obj({"rule": STR, "label": STR, "message": STR, "blocking": BOOL, "excerpt": STR}),
    "Preview": obj(
        {
            "audience": STR,
            "recipients": obj({"chats": COUNTS, "emails": INT, "unreachable": INT, "guardians": INT}),
            "gaps": array(STR),
            "tasks": array(obj({"class_name": STR, "teacher": STR, "deadline": TIME})),
            "held_until": _nullable(TIME),
            "estimate": obj({"last": _nullable(TIME), "by_channel": {"type": "object", "additionalProperties": TIME}}),
            "warnings": array(STR),
            "findings": array(ref("Finding")),
            "blocked": BOOL,
            "audit": STR,
        }
    ),
    "Progress": obj(
        {"id": INT, "total": INT, "done": INT, "delivered": INT, "failed": INT, "cancelled": INT, "complete": BOOL}
    ),
    "Announcement": obj(
        {
            "id": INT,
            "title": STR,
            "text": STR,
            "kind": STR,
            "kind_label": STR,
            "audience": STR,
            "author": STR,
            "author_name": STR,
            "created_at": TIME,
            "send_at": _nullable(TIME),
            "cancelled_at": _nullable(TIME),
            "progress": ref("Progress"),
        }
    ),
    "Created": obj({"id": INT, "created": BOOL, "announcement": ref("Announcement"), "preview": ref("Preview")}),
    "AnnouncementList": obj({"announcements": array(ref("Announcement"))}),
    "Person": obj(
        {
            "name": STR,
            "phone": STR,
            "students": STR,
            "bucket": STR,
            "bucket_label": STR,
            "reason": STR,
            "acknowledged": BOOL,
            "opted_out": BOOL,
        }
    ),
    "ClassReport": obj(
        {
            "name": STR,
            "teacher": STR,
            "chats": array(obj({"kind": STR, "channel": STR, "status": STR, "status_label": STR, "error": STR})),
            "gaps": array(STR),
            "forwarding": STR,
            "counts": COUNTS,
            "acknowledged": INT,
            "opted_out": INT,
            "people": array(ref("Person")),
            "to_call": array(ref("Person")),
        }
    ),
    "Report": obj(
        {
            "announcement": ref("Announcement"),
            "complete": BOOL,
            "chats": obj({"total": INT, "delivered": INT}),
            "emails": obj({"total": INT, "delivered": INT}),
            "counts": COUNTS,
            "classes": array(ref("ClassReport")),
        }
    ),
    "CancelResult": obj({"id": INT, "cancelled": INT, "announcement": ref("Announcement")}),
    "Task": obj(
        {
            "id": INT,
            "announcement_id": INT,
            "title": STR,
            "text": STR,
            "class_name": STR,
            "teacher": STR,
            "groups": array(STR),
            "deadline": TIME,
            "status": STR,
            "status_label": STR,
            "note": STR,
            "done_at": _nullable(TIME),
            "done_by": STR,
        }
    ),
    "TaskList": obj({"tasks": array(ref("Task"))}),
    "ForwardInput": obj({"note": {"type": "string", "maxLength": MAX_NOTE}}, required=[]),
    "Chat": obj(
        {
            "channel": STR,
            "address": STR,
            "class_name": STR,
            "kind": STR,
            "kind_label": STR,
            "title": STR,
            "status": STR,
            "status_reason": STR,
            "source": STR,
            "updated_at": TIME,
            "checked_at": _nullable(TIME),
            "in_use": BOOL,
        }
    ),
    "ChatList": obj({"chats": array(ref("Chat"))}),
    "ChatCheck": obj(
        {
            "results": array(
                obj(
                    {
                        "channel": STR,
                        "address": STR,
                        "class_name": STR,
                        "kind": STR,
                        "ok": _nullable(BOOL),
                        "explanation": STR,
                    }
                )
            ),
            "broken": INT,
        }
    ),
    "RosterPerson": obj({"name": STR, "classes": array(STR), "email": STR, "phone": STR, "detail": STR}),
    "RosterPreview": obj(
        {
            "rows": INT,
            "guardians": INT,
            "added": array(ref("RosterPerson")),
            "changed": array(ref("RosterPerson")),
            "left": array(ref("RosterPerson")),
            "unchanged": INT,
            "warnings": array(STR),
        }
    ),
    "RosterImport": obj({"added": INT, "updated": INT, "left": INT, "unchanged": INT, "preview": ref("RosterPreview")}),
    "AuditList": obj(
        {
            "entries": array(
                obj(
                    {
                        "id": INT,
                        "at": TIME,
                        "actor": STR,
                        "actor_name": STR,
                        "action": STR,
                        "announcement_id": _nullable(INT),
                        "details": STR,
                    }
                )
            )
        }
    ),
    "AlertList": obj(
        {"alerts": array(obj({"id": INT, "created_at": TIME, "kind": STR, "subject": STR, "message": STR}))}
    ),
    "Window": obj({"start": STR, "end": STR}),
    "ClassWindowInput": obj(
        {
            "start": {"type": "string", "minLength": 1, "maxLength": 8, "description": "начало, ЧЧ:ММ (09:00)"},
            "end": {"type": "string", "minLength": 1, "maxLength": 8, "description": "конец, ЧЧ:ММ (18:00)"},
        }
    ),
    "ClassWindow": obj(
        {
            "name": STR,
            "teacher": STR,
            "teacher_name": STR,
            "window": ref("Window"),
            "source": {"type": "string", "enum": ["class", "config", "school"]},
            "source_label": STR,
            "configured": _nullable(obj({"start": STR, "end": STR})),  # the school file's; null: none there
            "override": _nullable(
                obj(
                    {
                        "start": STR,
                        "end": STR,
                        "set_by": STR,
                        "set_by_name": STR,
                        "set_at": TIME,
                        "applied": BOOL,
                    }
                )
            ),
            "may_change": BOOL,
        }
    ),
    "ClassWindowList": obj({"school_window": ref("Window"), "classes": array(ref("ClassWindow"))}),
    "ClassWindowReset": obj({"removed": BOOL, "class": ref("ClassWindow")}),
    "Token": obj(
        {
            "id": INT,
            "staff_id": STR,
            "staff_name": STR,
            "label": STR,
            "created_at": TIME,
            "revoked_at": _nullable(TIME),
            "active": BOOL,
            "mine": BOOL,
        }
    ),
    "TokenList": obj({"tokens": array(ref("Token"))}),
    "TokenRevoke": obj({"revoked": BOOL, "token": ref("Token")}),
}

ERRORS = {
    "400": "неверный запрос (тело не JSON, не то поле, не тот тип)",
    "401": "нужен вход: сессия или токен API",
    "403": "нет прав (роль) или не пройдена проверка CSRF",
    "404": "не найдено",
    "409": "ключ повтора (Idempotency-Key) уже использован для другого объявления",
    "413": "слишком большое тело запроса",
    "415": "не тот Content-Type",
    "422": "отказано правилами школы",
}


def _responses(ok: str, schema: Schema | None, *, media: str = "application/json", errors: str = "") -> Schema:
    out: Schema = {}
    body = {"content": {media: {"schema": schema}}} if schema is not None else {}
    out[ok] = {"description": "успех", **body}
    for code in errors.split():
        error_media = "application/json" if media in ("application/json", "text/csv") else "text/html"
        error_schema = ref("Error") if error_media == "application/json" else STR
        out[code] = {"description": ERRORS.get(code, "ошибка"), "content": {error_media: {"schema": error_schema}}}
    return out


def _json_body(name: str, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": ref(name)}}}


def _form_body(properties: Mapping[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": obj(properties, required=required or [])}},
    }


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
CLASS = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 10},
    "description": "класс, например 7Б",
}
TOKEN = {"name": "token", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 120}}
API = "401 403"
HTML = "text/html"
CSRF_FORM = {"csrf": STR}


def _op(summary: str, responses: Schema, **extra: Any) -> Schema:
    return {"summary": summary, "responses": responses, **extra}


def document(title: str = "Zvonok") -> Schema:
    """The OpenAPI 3.0 document of every route of the app."""
    ann_id = [ID]
    page = _responses("200", STR, media=HTML, errors="400 401 403")
    page_404 = _responses("200", STR, media=HTML, errors="400 401 403 404")
    paths: dict[str, dict[str, Schema]] = {
        "/api/openapi.json": {"get": _op("этот документ", _responses("200", {"type": "object"}), security=[])},
        "/api/me": {"get": _op("кто я: сотрудник, роль, классы", _responses("200", ref("Me"), errors=API))},
        "/api/announcements": {
            "get": _op(
                "объявления школы (классному руководителю — своих классов), новые первыми",
                _responses("200", ref("AnnouncementList"), errors=f"400 {API}"),
                parameters=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
                ],
            ),
            "post": _op(
                "создать объявление: оно и все его доставки сохраняются одной транзакцией; повтор с тем же "
                "Idempotency-Key и тем же телом возвращает то же объявление (200 вместо 201), с другим телом — 409",
                {
                    **_responses("201", ref("Created"), errors=f"400 {API} 409 413 415 422"),
                    "200": {
                        "description": "уже создано с этим ключом",
                        "content": {"application/json": {"schema": ref("Created")}},
                    },
                },
                requestBody=_json_body("AnnouncementInput"),
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "maxLength": 200},
                        "description": "ключ идемпотентности",
                    }
                ],
            ),
        },
        "/api/announcements/preview": {
            "post": _op(
                "предпросмотр (dry run): кому и как дойдёт, замечания к тексту, оценка времени; ничего не сохраняет",
                _responses("200", ref("Preview"), errors=f"400 {API} 413 415 422"),
                requestBody=_json_body("AnnouncementInput"),
            )
        },
        "/api/announcements/{id}": {
            "get": _op(
                "объявление и ход доставки",
                _responses("200", ref("Announcement"), errors=f"{API} 404"),
                parameters=ann_id,
            )
        },
        "/api/announcements/{id}/progress": {
            "get": _op(
                "ход доставки (для опроса страницей)",
                _responses("200", ref("Progress"), errors=f"{API} 404"),
                parameters=ann_id,
            )
        },
        "/api/announcements/{id}/report": {
            "get": _op(
                "отчёт по классам: в чате, письмом, не доставлено, без связи, ознакомились, отписались",
                _responses("200", ref("Report"), errors=f"{API} 404"),
                parameters=ann_id,
            )
        },
        "/api/announcements/{id}/report.csv": {
            "get": _op(
                "отчёт по представителям в CSV (UTF-8 с BOM, «;»)",
                _responses("200", STR, media="text/csv", errors=f"{API} 404"),
                parameters=ann_id,
            )
        },
        "/api/announcements/{id}/cancel": {
            "post": _op(
                "отменить то, что ещё не отправлено",
                _responses("200", ref("CancelResult"), errors=f"{API} 404"),
                parameters=ann_id,
            )
        },
        "/api/tasks": {
            "get": _op(
                "задачи пересылки (классному руководителю — свои)", _responses("200", ref("TaskList"), errors=API)
            )
        },
        "/api/tasks/{id}/forward": {
            "post": _op(
                "переслать объявление в чаты класса, с комментарием",
                _responses("200", ref("Task"), errors=f"400 {API} 404 413 415 422"),
                parameters=[ID],
                requestBody=_json_body("ForwardInput", required=False),
            )
        },
        "/api/chats": {"get": _op("чаты школы и их состояние", _responses("200", ref("ChatList"), errors=API))},
        "/api/chats/check": {
            "post": _op("проверить, может ли бот писать в чаты", _responses("200", ref("ChatCheck"), errors=API))
        },
        "/api/roster/preview": {
            "post": _op(
                "что изменит загрузка списка: новые, изменившиеся, выбывшие (удалить из чата)",
                _responses("200", ref("RosterPreview"), errors=f"400 {API} 413 415"),
                requestBody={"required": True, "content": {"text/csv": {"schema": STR}}},
            )
        },
        "/api/roster": {
            "post": _op(
                "загрузить список (заменяет прежний одной транзакцией)",
                _responses("200", ref("RosterImport"), errors=f"400 {API} 413 415"),
                requestBody={"required": True, "content": {"text/csv": {"schema": STR}}},
            )
        },
        "/api/audit": {"get": _op("журнал аудита", _responses("200", ref("AuditList"), errors=API))},
        "/api/alerts": {"get": _op("открытые предупреждения", _responses("200", ref("AlertList"), errors=API))},
        "/api/classes": {
            "get": _op(
                "классы и их окна рассылки в чатах: какое действует и откуда (классному руководителю — свой класс)",
                _responses("200", ref("ClassWindowList"), errors=API),
            )
        },
        "/api/classes/{name}/window": {
            "put": _op(
                "сузить окно рассылки в чатах класса (внутри окна школы, ЧЧ:ММ); записывается в журнал аудита",
                _responses("200", ref("ClassWindow"), errors=f"400 {API} 404 413 415"),
                parameters=[CLASS],
                requestBody=_json_body("ClassWindowInput"),
            ),
            "delete": _op(
                "сбросить окно класса: снова действует окно из файла школы",
                _responses("200", ref("ClassWindowReset"), errors=f"{API} 404"),
                parameters=[CLASS],
            ),
        },
        # --- pages (HTML); a form POST carries the session's CSRF token
        "/": {"get": _op("главная: переход в раздел роли", {"303": {"description": "в раздел роли"}, **page})},
        "/login": {
            "get": _op("вход", _responses("200", STR, media=HTML), security=[]),
            "post": _op(
                "вход по паролю",
                {
                    "303": {"description": "вход выполнен"},
                    **_responses("200", STR, media=HTML, errors="400 403 413 429"),
                },
                security=[],
                requestBody=_form_body(
                    {"school": STR, "login": STR, "password": STR, "next": STR, "login_csrf": STR},
                    ["login", "password"],
                ),
            ),
        },
        "/logout": {
            "post": _op("выход", {"303": {"description": "выход выполнен"}, **page}, requestBody=_form_body(CSRF_FORM))
        },
        "/compose": {
            "get": _op("новое объявление", page),
            "post": _op(
                "предпросмотр или отправка объявления",
                {"303": {"description": "создано"}, **_responses("200", STR, media=HTML, errors="400 401 403 409 422")},
                requestBody=_form_body(
                    {
                        "csrf": STR,
                        "action": {"type": "string", "enum": ["preview", "send"]},
                        "key": STR,
                        "title": STR,
                        "text": STR,
                        "kind": STR,
                        "scope": STR,
                        "groups": array(STR),
                        "parallels": array(STR),
                        "classes": array(STR),
                        "send_at": STR,
                        "via_class_teachers": STR,
                        "reason": STR,
                    }
                ),
            ),
        },
        "/announcements": {"get": _op("объявления и ход доставки", page)},
        "/announcements/{id}": {"get": _op("отчёт об объявлении по классам", page_404, parameters=ann_id)},
        "/announcements/{id}/cancel": {
            "post": _op(
                "отменить неотправленное",
                {"303": {"description": "отменено"}, **page_404},
                parameters=ann_id,
                requestBody=_form_body(CSRF_FORM),
            )
        },
        "/tasks": {"get": _op("задачи пересылки классного руководителя", page)},
        "/tasks/{id}/forward": {
            "post": _op(
                "переслать в чаты класса",
                {
                    "303": {"description": "переслано"},
                    **_responses("200", STR, media=HTML, errors="400 401 403 404 422"),
                },
                parameters=[ID],
                requestBody=_form_body({"csrf": STR, "note": STR}),
            )
        },
        "/chats": {"get": _op("чаты и их состояние", page)},
        "/chats/check": {
            "post": _op(
                "проверить чаты", {"303": {"description": "проверено"}, **page}, requestBody=_form_body(CSRF_FORM)
            )
        },
        "/roster": {"get": _op("загрузка списка родителей", page)},
        "/roster/preview": {
            "post": _op(
                "предпросмотр изменений списка",
                _responses("200", STR, media=HTML, errors="400 401 403 413"),
                requestBody={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": obj({"csrf": STR, "file": {"type": "string", "format": "binary"}}, required=[])
                        }
                    },
                },
            )
        },
        "/roster/apply": {
            "post": _op(
                "загрузить список после предпросмотра",
                _responses("200", STR, media=HTML, errors="400 401 403 413"),
                requestBody=_form_body({"csrf": STR, "data": STR}),
            )
        },
        "/audit": {"get": _op("журнал аудита", page)},
        "/alerts": {"get": _op("предупреждения", page)},
        "/settings": {"get": _op("настройки: параметры школы, окна рассылки классов, токены API", page)},
        "/settings/classes/{name}/window": {
            "post": _op(
                "задать (action=set) или сбросить (action=reset) окно рассылки класса",
                {"303": {"description": "сохранено"}, **page_404},
                parameters=[CLASS],
                requestBody=_form_body(
                    {"csrf": STR, "action": {"type": "string", "enum": ["set", "reset"]}, "start": STR, "end": STR}
                ),
            )
        },
        # --- parents, from a letter, without login
        "/p/ack/{token}": {
            "get": _op(
                "«Ознакомлен»: подтверждение",
                _responses("200", STR, media=HTML, errors="400 404"),
                parameters=[TOKEN],
                security=[],
            ),
            "post": _op(
                "«Ознакомлен»: записать",
                _responses("200", STR, media=HTML, errors="400 404"),
                parameters=[TOKEN],
                security=[],
            ),
        },
        "/p/unsubscribe/{token}": {
            "get": _op(
                "отписка: подтверждение",
                _responses("200", STR, media=HTML, errors="400 404"),
                parameters=[TOKEN],
                security=[],
            ),
            "post": _op(
                "отписка (в том числе One-Click, RFC 8058)",
                _responses("200", STR, media=HTML, errors="400 404"),
                parameters=[TOKEN],
                security=[],
            ),
        },
        # --- MAX webhook (its own secret header) and static files
        "/webhooks/max/{school_id}": {
            "post": _op(
                "события бота MAX (bot_added, bot_removed)",
                {
                    "200": {"description": "принято", "content": {"application/json": {"schema": {"type": "object"}}}},
                    **{
                        code: {
                            "description": ERRORS.get(code, "ошибка"),
                            "content": {"application/json": {"schema": obj({"error": STR})}},
                        }
                        for code in ("400", "401", "404", "413")
                    },
                },
                parameters=[{"name": "school_id", "in": "path", "required": True, "schema": STR}],
                security=[],
                requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            )
        },
        "/static/{path}": {
            "get": _op(
                "стили и скрипт страниц",
                {"200": {"description": "файл"}, "404": {"description": "нет такого файла"}},
                parameters=[{"name": "path", "in": "path", "required": True, "schema": STR}],
                security=[],
            )
        },
        # --- API tokens, last: a run through the document may revoke the very token it calls with
        "/api/tokens": {
            "get": _op(
                "токены API: свои (администратору — все токены школы); сами токены не показываются никогда",
                _responses("200", ref("TokenList"), errors=API),
            )
        },
        "/api/tokens/{id}": {
            "delete": _op(
                "отозвать токен API (свой; администратор — любой токен школы): он перестаёт действовать сразу",
                _responses("200", ref("TokenRevoke"), errors=f"{API} 404"),
                parameters=[ID],
            )
        },
        "/settings/tokens/{id}/revoke": {
            "post": _op(
                "отозвать токен API со страницы настроек",
                {"303": {"description": "отозван (или вход больше не действует)"}, **page_404},
                parameters=[ID],
                requestBody=_form_body(CSRF_FORM),
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{title}: API для сотрудников школы",
            "version": "1",
            "description": (
                "Объявления, пересылка классными руководителями, ход доставки, отчёты, чаты, список родителей, "
                "журнал аудита, окна рассылки классов, токены API. Вход: сессия браузера (cookie + CSRF-токен в "
                "X-CSRF-Token) или токен API (Authorization: Bearer zv_…, выдаёт `zvonok staff token`, список и "
                "отзыв — /api/tokens). Ошибки — JSON {error, code, problems}."
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "zvonok_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }


# ---------------------------------------------------------------------- validation of request bodies

_TYPE_NAMES = {
    "string": "строка",
    "integer": "целое число",
    "number": "число",
    "boolean": "да/нет (true/false)",
    "array": "список",
    "object": "объект",
}


def _is(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})$")


def validate(schema: Schema, value: Any, path: str = "") -> list[Problem]:
    """Problems of `value` against `schema` (the subset of JSON Schema the document uses), in Russian."""
    if "$ref" in schema:
        return validate(SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]], value, path)
    where = path or "тело запроса"

    def bad(message: str) -> list[Problem]:
        return [Problem("запрос", message, None, where)]

    if value is None:
        return [] if schema.get("nullable") else bad("значение не может быть null")
    kind = schema.get("type")
    if kind and not _is(kind, value):
        return bad(f"ожидается {_TYPE_NAMES.get(kind, kind)}")
    problems: list[Problem] = []
    if "enum" in schema and value not in schema["enum"]:
        return bad(f"недопустимое значение «{str(value)[:40]}»; допустимы: {', '.join(map(str, schema['enum']))}")
    if kind == "string":
        if len(value) < schema.get("minLength", 0):
            return bad("не может быть пустым" if schema["minLength"] == 1 else f"не короче {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return bad(f"не длиннее {schema['maxLength']} символов")
        if schema.get("format") == "date-time" and not _valid_time(value):
            return bad("ожидается дата и время ISO 8601 с часовым поясом, например 2026-11-23T08:00:00+05:00")
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            return bad(f"ожидается число от {low} до {high}" if high is not None else f"не меньше {low}")
    if kind == "array":
        if len(value) < schema.get("minItems", 0):
            return bad("выберите хотя бы одно значение")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return bad(f"не больше {schema['maxItems']} значений")
        if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
            return bad("значения повторяются")
        for i, item in enumerate(value):
            problems.extend(validate(schema.get("items", {}), item, f"{where}[{i}]"))
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(Problem("запрос", "обязательное поле не заполнено", None, _join(path, name)))
        for name, item in value.items():
            if name in properties:
                problems.extend(validate(properties[name], item, _join(path, name)))
            elif schema.get("additionalProperties") is False:
                problems.append(Problem("запрос", "неизвестное поле", None, _join(path, str(name)[:40])))
            elif isinstance(schema.get("additionalProperties"), dict):
                problems.extend(validate(schema["additionalProperties"], item, _join(path, str(name))))
    return problems


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _valid_time(value: str) -> bool:
    if not _DATE_TIME.match(value):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None
