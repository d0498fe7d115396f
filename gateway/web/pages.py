"""The staff pages: server-rendered Russian HTML (jinja2, every value escaped), usable on a phone.

Forms post back with the session's CSRF token; after a change the browser is redirected (POST → 303 → GET), so
a reload never repeats it. The announcement list and the report poll /api/announcements/{id}/progress for live
progress (static/app.js). Handlers share their work with the API (gateway.web.api, gateway.web.views).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from gateway.domain import Group, Kind, Role, parse_number
from gateway.errors import Conflict, InvalidInput, PolicyViolation, Problem, ZvonokError
from gateway.roster import parse_roster
from gateway.web import api, auth, views
from gateway.web.app import PRINCIPAL, SETTINGS, UPLOAD_LIMIT, input_status, principal, read_form, render
from gateway.web.auth import Principal
from gateway.webhooks import GATEWAY

HOME = {
    Role.DIRECTOR: "/announcements",
    Role.DEPUTY: "/announcements",
    Role.CLASS_TEACHER: "/tasks",
    Role.ADMIN: "/chats",
}

DONE = {
    "created": "Объявление принято: доставки сохранены и уже отправляются.",
    "existing": "Это объявление уже было отправлено (повторная отправка формы ничего не дублирует).",
    "cancelled": "Неотправленное отменено.",
    "forwarded": "Объявление переслано в чаты класса.",
    "window": "Окно рассылки класса сохранено.",
    "window-reset": "Окно рассылки класса сброшено: действует окно из файла школы.",
    "revoked": "Токен API отозван: с ним больше нельзя войти.",
}

GROUP_LABELS = {Group.PARENTS: "родителям", Group.STUDENTS: "ученикам", Group.TEACHERS: "учителям"}


def _safe_next(raw: str) -> str:
    """Only a path of this site (never //other.site or a scheme): no open redirect after login."""
    if not raw.startswith("/") or raw.startswith("//") or "\\" in raw or any(ord(c) < 32 for c in raw):
        return "/"
    return raw


async def home(request: web.Request) -> web.Response:
    who = principal(request)
    target = HOME.get(who.role)
    if target is None:
        return render(request, "home.html", {})
    raise web.HTTPSeeOther(target)


# ---------------------------------------------------------------------- login


LOGIN_LIMIT = 4096  # a login form is a few hundred bytes


def secure_cookies(request: web.Request) -> bool:
    """Secure cookies unless the app is reached over plain http (a local demo or test): an https public URL, or
    a request that came over https (directly or through a trusted proxy)."""
    return request.app[SETTINGS].secure_cookies or request.secure


async def login_form(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    who = request.get(PRINCIPAL)
    nxt = _safe_next(request.query.get("next", "/"))
    if who is not None and not error:
        raise web.HTTPSeeOther(nxt)
    gateway = request.app[GATEWAY]
    schools = gateway.config.schools
    token = secrets.token_urlsafe(24)
    context = {
        # the installation's schools are named to anonymous visitors only where its settings say so
        "schools": list(schools.values()) if gateway.config.settings.login_lists_schools else [],
        "several": len(schools) > 1,
        "school": request.query.get("school", "")[:100],
        "next": nxt,
        "error": error,
        "login_csrf": token,
    }
    response = render(request, "login.html", context, status=status)
    response.set_cookie(
        auth.LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request),
        max_age=3600,
        path="/login",
    )
    return response


async def login(request: web.Request) -> web.Response:
    if request.content_length is None or request.content_length > LOGIN_LIMIT:
        raise web.HTTPRequestEntityTooLarge(
            max_size=LOGIN_LIMIT, actual_size=request.content_length or 0, reason="форма входа слишком велика"
        )
    form = await read_form(request)
    gateway = request.app[GATEWAY]
    if not auth.same(str(form.get("login_csrf", "")), request.cookies.get(auth.LOGIN_COOKIE, "")):
        return await login_form(request, error="Страница входа устарела: введите пароль ещё раз.", status=400)
    schools = list(gateway.config.schools)
    school_id = str(form.get("school", "")).strip() or (schools[0] if len(schools) == 1 else "")
    login_name = str(form.get("login", "")).strip()[:100]
    password = str(form.get("password", ""))
    if not login_name or not password:
        return await login_form(request, error="Введите логин и пароль.", status=400)
    attempt = await auth.login(
        gateway,
        school_id[:100],
        login_name,
        password,
        address=request.remote or "",
        device=request.cookies.get(auth.DEVICE_COOKIE, ""),
    )
    if attempt.retry_after:
        wait = _wait_text(attempt.retry_after)
        response = await login_form(
            request, error=f"Слишком много неудачных попыток входа. Повторите через {wait}.", status=429
        )
        response.headers["Retry-After"] = str(int(attempt.retry_after + 0.999))
        return response
    if attempt.principal is None:
        return await login_form(request, error="Неверный логин или пароль.", status=400)
    response = web.HTTPSeeOther(_safe_next(str(form.get("next", "/"))))
    secure = secure_cookies(request)
    response.set_cookie(
        auth.SESSION_COOKIE,
        attempt.session_id,
        httponly=True,
        samesite="Lax",
        secure=secure,
        max_age=int(auth.SESSION_LIFETIME.total_seconds()),
        path="/",
    )
    response.set_cookie(
        auth.DEVICE_COOKIE, attempt.device, httponly=True, samesite="Strict", secure=secure, max_age=YEAR, path="/login"
    )
    response.del_cookie(auth.LOGIN_COOKIE, path="/login")
    raise response


YEAR = 365 * 24 * 3600


def _wait_text(seconds: float) -> str:
    whole = int(seconds + 0.999)
    return f"{whole} с" if whole < 60 else f"{(whole + 59) // 60} мин"


async def logout(request: web.Request) -> web.Response:
    who = principal(request)
    if who.session_hash:
        await request.app[GATEWAY].store.delete_session(who.session_hash)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    raise response


# ---------------------------------------------------------------------- compose


def _compose_context(request: web.Request, form: dict[str, Any], **extra: Any) -> dict[str, Any]:
    who = principal(request)
    school = who.school
    own = who.own_classes()
    classes = [c for c in school.classes.values() if who.administration or c.name in own]
    kinds = [k for k in Kind if who.administration or k is not Kind.FORCE_MAJEURE]
    groups = [g for g in Group if who.administration or g is not Group.TEACHERS]
    return {
        "form": form,
        "classes": classes,
        "parallels": sorted({c.parallel for c in classes}),
        "kinds": kinds,
        "groups": [(g.value, GROUP_LABELS[g]) for g in groups],
        "zone": str(school.zone),
        "preview": None,
        "errors": [],
        **extra,
    }


def _empty_form(who: Principal) -> dict[str, Any]:
    return {
        "key": secrets.token_urlsafe(12),
        "title": "",
        "text": "",
        "kind": Kind.GENERAL.value,
        "scope": "all" if who.administration else "classes",
        "groups": [Group.PARENTS.value],
        "parallels": [],
        "classes": sorted(who.own_classes()) if not who.administration else [],
        "send_at": "",
        "via_class_teachers": False,
        "reason": "",
    }


async def compose_form(request: web.Request) -> web.Response:
    return render(request, "compose.html", _compose_context(request, _empty_form(principal(request))))


def _form_state(form: MultiDictProxy[Any]) -> dict[str, Any]:
    return {
        "key": str(form.get("key", ""))[:64] or secrets.token_urlsafe(12),
        "title": str(form.get("title", "")),
        "text": str(form.get("text", "")),
        "kind": str(form.get("kind", Kind.GENERAL.value)),
        "scope": str(form.get("scope", "all")),
        "groups": [str(g) for g in form.getall("groups", [])],
        "parallels": [str(p) for p in form.getall("parallels", [])],
        "classes": [str(c) for c in form.getall("classes", [])],
        "send_at": str(form.get("send_at", "")),
        "via_class_teachers": bool(form.get("via_class_teachers")),
        "reason": str(form.get("reason", "")),
    }


def _body(who: Principal, state: dict[str, Any]) -> dict[str, Any]:
    """The API body (AnnouncementInput) the form means."""
    body: dict[str, Any] = {
        "title": state["title"],
        "text": state["text"],
        "kind": state["kind"],
        "groups": state["groups"],
        "via_class_teachers": state["via_class_teachers"],
        "reason": state["reason"],
    }
    scope = state["scope"] if who.administration else "classes"
    if scope == "parallels":
        parallels = []
        for raw in state["parallels"]:
            number = parse_number(raw)
            if number is None:
                raise InvalidInput([Problem("форма", f"«{raw[:10]}» — не номер параллели", None, "parallels")])
            parallels.append(number)
        if not parallels:
            raise InvalidInput([Problem("форма", "выберите хотя бы одну параллель", None, "parallels")])
        body["parallels"] = parallels
    elif scope == "classes":
        if not state["classes"] and set(state["groups"]) - {Group.TEACHERS.value}:
            raise InvalidInput([Problem("форма", "выберите хотя бы один класс", None, "classes")])
        body["classes"] = state["classes"]
    if state["send_at"]:
        try:
            local = datetime.fromisoformat(state["send_at"])
        except ValueError:
            raise InvalidInput([Problem("форма", "время отправки не распознано", None, "send_at")]) from None
        if local.tzinfo is None:
            local = local.replace(tzinfo=who.school.zone)
        body["send_at"] = local.isoformat()
    return body


async def compose(request: web.Request) -> web.Response:
    who = principal(request)
    gateway = request.app[GATEWAY]
    form = await read_form(request)
    state = _form_state(form)
    try:
        body = _body(who, state)
        if form.get("action") == "send":
            req = views.announcement_request(who, body, api.idempotency_key(who, state["key"]))
            posted = await gateway.post(req, check_chats=True)
            raise web.HTTPSeeOther(f"/announcements/{posted.id}?done={'created' if posted.created else 'existing'}")
        req = views.announcement_request(who, body)
        preview = views.preview(await gateway.preview(req, check_chats=True), gateway, who.school.id)
        preview["audience"] = req.audience.describe()
    except InvalidInput as exc:
        errors = [f"{p.field}: {p.message}" if p.field else p.message for p in exc.problems]
        return render(request, "compose.html", _compose_context(request, state, errors=errors), input_status(exc))
    except PolicyViolation as exc:
        return render(request, "compose.html", _compose_context(request, state, errors=[str(exc)]), status=422)
    except Conflict as exc:  # the form was sent before with other content: a fresh key lets this one go
        state["key"] = secrets.token_urlsafe(12)
        return render(request, "compose.html", _compose_context(request, state, errors=[str(exc)]), status=409)
    return render(request, "compose.html", _compose_context(request, state, preview=preview))


# ---------------------------------------------------------------------- announcements and reports


async def announcement_list(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    items = await views.announcements(gateway, principal(request))
    return render(request, "announcements.html", {"items": items})


async def announcement_report(request: web.Request) -> web.Response:
    data = await api.report_data(request)
    return render(request, "report.html", {"report": data, "done": DONE.get(request.query.get("done", ""), "")})


async def cancel(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    who = principal(request)
    record = await views.find(gateway, who, api.path_id(request))
    await gateway.store.cancel_announcement(record.id, who.staff.id, gateway.clock.now())
    raise web.HTTPSeeOther(f"/announcements/{record.id}?done=cancelled")


# ---------------------------------------------------------------------- forwarding


async def task_inbox(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    gateway = request.app[GATEWAY]
    items = await views.tasks(gateway, principal(request))
    done = DONE.get(request.query.get("done", ""), "")
    return render(request, "tasks.html", {"tasks": items, "error": error, "done": done}, status=status)


async def forward(request: web.Request) -> web.Response:
    form = await read_form(request)
    task_id = api.path_id(request)
    try:
        await api.forward(request, task_id, str(form.get("note", "")))
    except (InvalidInput, PolicyViolation) as exc:
        message = "; ".join(p.message for p in exc.problems) if isinstance(exc, InvalidInput) else str(exc)
        return await task_inbox(request, error=f"Задача № {task_id}: {message}", status=422)
    raise web.HTTPSeeOther("/tasks?done=forwarded")


# ---------------------------------------------------------------------- chats, roster, journal


async def chat_health(request: web.Request, *, check: dict[str, Any] | None = None) -> web.Response:
    gateway = request.app[GATEWAY]
    school_id = principal(request).school.id
    return render(
        request,
        "chats.html",
        {
            "chats": await views.chats(gateway, school_id),
            "alerts": await views.alerts(gateway, school_id),
            "check": check,
        },
    )


async def check_chats(request: web.Request) -> web.Response:
    result = await views.check_chats(request.app[GATEWAY], principal(request).school.id)
    return await chat_health(request, check=result)


async def roster_form(request: web.Request) -> web.Response:
    return render(request, "roster.html", {"diff": None, "data": "", "errors": [], "result": None})


async def roster_preview(request: web.Request) -> web.Response:
    who = principal(request)
    gateway = request.app[GATEWAY]
    form = await read_form(request)
    upload = form.get("file")
    data = upload.file.read(UPLOAD_LIMIT + 1) if isinstance(upload, web.FileField) else b""
    try:
        if not data:
            raise ZvonokError("выберите файл CSV — выгрузку из электронного журнала")
        roster = parse_roster(data, who.school, source="файл")
    except InvalidInput as exc:
        errors = [str(p) for p in exc.problems]
        context = {"diff": None, "data": "", "errors": errors, "result": None}
        return render(request, "roster.html", context, input_status(exc))
    except ZvonokError as exc:
        return render(request, "roster.html", {"diff": None, "data": "", "errors": [str(exc)], "result": None}, 400)
    diff = views.roster_diff(await gateway.store.guardians(who.school.id), roster, who.school.id)
    encoded = base64.b64encode(data).decode()
    return render(request, "roster.html", {"diff": diff, "data": encoded, "errors": [], "result": None})


async def roster_apply(request: web.Request) -> web.Response:
    form = await read_form(request)
    try:
        data = base64.b64decode(str(form.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        errors = ["данные списка потеряны: загрузите файл ещё раз"]
        return render(request, "roster.html", {"diff": None, "data": "", "errors": errors, "result": None}, 400)
    try:
        result = await api.import_roster(request, data)
    except InvalidInput as exc:
        errors = [str(p) for p in exc.problems]
        context = {"diff": None, "data": "", "errors": errors, "result": None}
        return render(request, "roster.html", context, input_status(exc))
    return render(request, "roster.html", {"diff": None, "data": "", "errors": [], "result": result})


async def audit(request: web.Request) -> web.Response:
    entries = await views.audit(request.app[GATEWAY], principal(request).school.id)
    return render(request, "audit.html", {"entries": entries})


async def alerts(request: web.Request) -> web.Response:
    items = await views.alerts(request.app[GATEWAY], principal(request).school.id)
    return render(request, "alerts.html", {"alerts": items})


# ---------------------------------------------------------------------- settings


async def settings(
    request: web.Request, *, errors: dict[str, list[str]] | None = None, status: int = 200
) -> web.Response:
    """The school's settings (read-only: the school file), the class windows and the API tokens."""
    gateway = request.app[GATEWAY]
    who = principal(request)
    return render(
        request,
        "settings.html",
        {
            "school": views.school_settings(gateway, who.school),
            "windows": await views.class_windows(gateway, who),
            "tokens": await views.tokens(gateway, who),
            "errors": errors or {},
            "done": DONE.get(request.query.get("done", ""), ""),
        },
        status=status,
    )


async def class_window(request: web.Request) -> web.Response:
    """Set or reset a class's window from the settings page (its class teacher, the administration, the admin)."""
    who = principal(request)
    gateway = request.app[GATEWAY]
    name = api.path_class(request, who)
    api.may_change_window(who, name)
    form = await read_form(request)
    if form.get("action") == "reset":
        await gateway.reset_class_window(who.school.id, name, who.staff.id)
        raise web.HTTPSeeOther("/settings?done=window-reset")
    try:
        await gateway.set_class_window(
            who.school.id, name, str(form.get("start", "")), str(form.get("end", "")), who.staff.id
        )
    except InvalidInput as exc:
        return await settings(request, errors={name: [p.message for p in exc.problems]}, status=400)
    raise web.HTTPSeeOther("/settings?done=window")


async def revoke_token(request: web.Request) -> web.Response:
    await views.revoke_token(request.app[GATEWAY], principal(request), api.path_id(request))
    raise web.HTTPSeeOther("/settings?done=revoked")
