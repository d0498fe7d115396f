"""The web application: the staff pages, the JSON API, the parents' pages and the MAX webhook, in one aiohttp app.

Every route is in `ROUTES` with the roles it allows (or PUBLIC). The guard middleware finds the route of each
request in that table; a route missing from it is refused (deny by default). It then
- lets PUBLIC routes through (login, the parents' signed links, the webhook with its own secret, static files);
- sends a request without a valid session or API token to the login page (a page) or answers 401 (the API);
- answers 403 to a role the route does not allow;
- for a state-changing request made with the session cookie, checks the Origin and the session's CSRF token.

The error middleware turns every failure into a Russian answer without internals: JSON {error, code, problems}
under /api/ and /webhooks/, a small HTML page elsewhere; an unexpected exception is logged with an incident
number, which the answer gives (a database that is away: 503 with Retry-After). Bodies are limited: JSON to
64 KiB, uploads (the roster) to 8 MiB, the login form to 4 KiB; a request gets `REQUEST_TIMEOUT` (then 408).
Behind a reverse proxy, `trusted_proxies` names whose X-Forwarded-* headers are believed (gateway.web.proxy).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from gateway.domain import Role
from gateway.errors import Conflict, InvalidInput, NotFound, PolicyViolation, Unprocessable, ZvonokError
from gateway.store import unavailable
from gateway.web import auth, proxy
from gateway.webhooks import GATEWAY

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("zvonok.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HERE = Path(__file__).parent
UPLOAD_LIMIT = 8 * 1024 * 1024
JSON_LIMIT = 64 * 1024
REQUEST_TIMEOUT = 120.0  # the longest a request may take, its body's upload included
IDLE_TIMEOUT = 30.0  # how long a connection may send no complete request


@dataclass(frozen=True, slots=True)
class WebSettings:
    public_url: str  # where people reach the app ("" when unknown: links in letters are then left out)
    secret: str  # signs the parents' links
    secure_cookies: bool  # Secure cookies (https); off only for a plain-http local demo or test


SETTINGS: web.AppKey[WebSettings] = web.AppKey("web_settings", WebSettings)
ACCESS: web.AppKey[dict[tuple[str, str], Access]] = web.AppKey("access", dict)
PRINCIPAL: web.RequestKey[auth.Principal | None] = web.RequestKey("zvonok_principal")


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use a route: `roles` (None: anyone, no login), and whether errors are answered as JSON."""

    roles: frozenset[Role] | None
    api: bool


PUBLIC: frozenset[Role] | None = None
STAFF = frozenset(Role)
ADMINISTRATION = frozenset({Role.DIRECTOR, Role.DEPUTY})
AUTHORS = ADMINISTRATION | {Role.CLASS_TEACHER}
IT = frozenset({Role.ADMIN})
WATCHERS = ADMINISTRATION | IT  # the alerts concern the IT admin (chats) and the deputies (late forwarding)
WINDOWS = ADMINISTRATION | {Role.CLASS_TEACHER} | IT  # class windows: a class teacher only their own class's


def routes() -> list[tuple[str, str, Handler, frozenset[Role] | None]]:
    """(method, path, handler, roles allowed) of every route; None: public."""
    from gateway.web import api, pages, parents
    from gateway.webhooks import max_update

    return [
        ("GET", "/api/openapi.json", api.openapi, PUBLIC),
        ("GET", "/api/me", api.me, STAFF),
        ("GET", "/api/announcements", api.list_announcements, AUTHORS),
        ("POST", "/api/announcements", api.create_announcement, AUTHORS),
        ("POST", "/api/announcements/preview", api.preview_announcement, AUTHORS),
        ("GET", "/api/announcements/{id}", api.get_announcement, AUTHORS),
        ("GET", "/api/announcements/{id}/progress", api.announcement_progress, AUTHORS),
        ("GET", "/api/announcements/{id}/report", api.announcement_report, AUTHORS),
        ("GET", "/api/announcements/{id}/report.csv", api.announcement_report_csv, AUTHORS),
        ("POST", "/api/announcements/{id}/cancel", api.cancel_announcement, ADMINISTRATION),
        ("GET", "/api/tasks", api.list_tasks, AUTHORS),
        ("POST", "/api/tasks/{id}/forward", api.forward_task, AUTHORS),
        ("GET", "/api/chats", api.list_chats, IT),
        ("POST", "/api/chats/check", api.check_chats, IT),
        ("POST", "/api/roster/preview", api.roster_preview, IT),
        ("POST", "/api/roster", api.roster_import, IT),
        ("GET", "/api/audit", api.audit_log, ADMINISTRATION),
        ("GET", "/api/alerts", api.alerts, WATCHERS),
        ("GET", "/api/classes", api.list_classes, WINDOWS),
        ("PUT", "/api/classes/{name}/window", api.set_class_window, WINDOWS),
        ("DELETE", "/api/classes/{name}/window", api.reset_class_window, WINDOWS),
        ("GET", "/api/tokens", api.list_tokens, STAFF),
        ("DELETE", "/api/tokens/{id}", api.revoke_token, STAFF),
        ("GET", "/", pages.home, STAFF),
        ("GET", "/login", pages.login_form, PUBLIC),
        ("POST", "/login", pages.login, PUBLIC),
        ("POST", "/logout", pages.logout, STAFF),
        ("GET", "/compose", pages.compose_form, AUTHORS),
        ("POST", "/compose", pages.compose, AUTHORS),
        ("GET", "/announcements", pages.announcement_list, AUTHORS),
        ("GET", "/announcements/{id}", pages.announcement_report, AUTHORS),
        ("POST", "/announcements/{id}/cancel", pages.cancel, ADMINISTRATION),
        ("GET", "/tasks", pages.task_inbox, AUTHORS),
        ("POST", "/tasks/{id}/forward", pages.forward, AUTHORS),
        ("GET", "/chats", pages.chat_health, IT),
        ("POST", "/chats/check", pages.check_chats, IT),
        ("GET", "/roster", pages.roster_form, IT),
        ("POST", "/roster/preview", pages.roster_preview, IT),
        ("POST", "/roster/apply", pages.roster_apply, IT),
        ("GET", "/audit", pages.audit, ADMINISTRATION),
        ("GET", "/alerts", pages.alerts, WATCHERS),
        ("GET", "/settings", pages.settings, STAFF),
        ("POST", "/settings/classes/{name}/window", pages.class_window, WINDOWS),
        ("POST", "/settings/tokens/{id}/revoke", pages.revoke_token, STAFF),
        ("GET", "/p/ack/{token}", parents.ack_form, PUBLIC),
        ("POST", "/p/ack/{token}", parents.ack, PUBLIC),
        ("GET", "/p/unsubscribe/{token}", parents.unsubscribe_form, PUBLIC),
        ("POST", "/p/unsubscribe/{token}", parents.unsubscribe, PUBLIC),
        ("POST", "/webhooks/max/{school_id}", max_update, PUBLIC),
    ]


def make_app(
    gateway: Gateway, *, public_url: str | None = None, request_timeout: float = REQUEST_TIMEOUT
) -> web.Application:
    """The whole HTTP surface of `zvonok serve`: API, pages, parents' pages, webhook, static files."""
    settings = gateway.config.settings
    url = (settings.public_url if public_url is None else public_url).rstrip("/")
    middlewares = [errors, deadline(request_timeout)]
    if settings.trusted_proxies:
        middlewares.append(proxy.forwarded(settings.trusted_proxies))
    app = web.Application(client_max_size=UPLOAD_LIMIT, middlewares=[*middlewares, guard])
    app[GATEWAY] = gateway
    app[SETTINGS] = WebSettings(url, settings.secret, secure_cookies=not url.startswith("http://"))
    access: dict[tuple[str, str], Access] = {}
    for method, path, handler, roles in routes():
        route = app.router.add_route(method, path, handler)
        access[(method, route.resource.canonical if route.resource else path)] = Access(roles, _is_api(path))
    static = app.router.add_static("/static", HERE / "static", append_version=True)
    access[("GET", static.canonical)] = access[("HEAD", static.canonical)] = Access(PUBLIC, False)
    app[ACCESS] = access
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped: titles and texts are shown as text
        undefined=jinja2.StrictUndefined,
        filters={"local": _local},
    )
    return app


def runner(app: web.Application, *, idle_timeout: float = IDLE_TIMEOUT) -> web.AppRunner:
    """How every server of the app runs it: no access log (paths and query strings may carry secrets), and a
    connection that sends no complete request for `idle_timeout` seconds is closed (slow or stalled clients)."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout)


def deadline(seconds: float) -> Any:
    """A request not answered within `seconds` (a body that never finishes arriving, say) ends with 408."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            async with asyncio.timeout(seconds):
                return await handler(request)
        except TimeoutError:
            raise web.HTTPRequestTimeout(reason="запрос не завершён вовремя: повторите его") from None

    return middleware


@jinja2.pass_context
def _local(context: Any, value: str | None, fmt: str = "%d.%m.%Y %H:%M") -> str:
    """An ISO time of the API shown in the school's own time zone."""
    if not value:
        return ""
    who = context.get("me")
    when = datetime.fromisoformat(value)
    return (when.astimezone(who.school.zone) if who is not None else when).strftime(fmt)


def _is_api(path: str) -> bool:
    return path.startswith(("/api/", "/webhooks/"))


def principal(request: web.Request) -> auth.Principal:
    """The signed-in staff member (the guard has made sure there is one)."""
    found: auth.Principal | None = request.get(PRINCIPAL)
    assert found is not None, "route without a login"
    return found


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """A page, with what every page knows: who is signed in, their CSRF token, the path, the roles."""
    who = request.get(PRINCIPAL)
    base = {"me": who, "csrf": who.csrf_token if who else "", "path": request.path, "Role": Role}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


async def _authenticate(request: web.Request) -> auth.Principal | None:
    gateway = request.app[GATEWAY]
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        return await auth.from_token(gateway, token.strip()) if scheme.lower() == "bearer" else None
    cookie = request.cookies.get(auth.SESSION_COOKIE, "")
    return await auth.from_session(gateway, cookie) if cookie else None


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # 404, 405: nothing to guard
        raise match.http_exception
    resource = match.route.resource
    rule = request.app[ACCESS].get((request.method, resource.canonical if resource else ""))
    if rule is None:
        raise web.HTTPForbidden(reason="доступ закрыт")  # deny by default: a route not in the table
    if rule.roles is None:  # PUBLIC
        if request.path == "/login":  # the login page sends the signed-in on
            request[PRINCIPAL] = await _authenticate(request)
        return await handler(request)
    who = await _authenticate(request)
    if who is None:
        if rule.api:
            raise web.HTTPUnauthorized(reason="нужен вход: сессия или токен API")
        raise web.HTTPSeeOther(f"/login?next={_quote(request.path_qs)}")
    request[PRINCIPAL] = who
    if who.role not in rule.roles:
        raise web.HTTPForbidden(reason=f"раздел недоступен для роли «{who.role.label}»")
    if who.via == "session" and request.method not in SAFE_METHODS:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin.rstrip("/") != _origin(request):
            raise web.HTTPForbidden(reason="запрос с чужого сайта отклонён")
        token = request.headers.get(auth.CSRF_HEADER, "")
        if not token and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            token = str((await read_form(request)).get(auth.CSRF_FIELD, ""))
        if not auth.same(token, who.csrf_token):
            raise web.HTTPForbidden(reason="проверка CSRF не пройдена: обновите страницу и повторите")
    return await handler(request)


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The form of a POST (urlencoded or multipart), or a Russian 400 for one that cannot be read."""
    try:
        return await request.post()
    except web.HTTPException:
        raise
    except (ValueError, TypeError, AssertionError, UnicodeDecodeError, HttpProcessingError):
        raise web.HTTPBadRequest(reason="форма не читается: отправьте её со страницы ещё раз") from None


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


# ---------------------------------------------------------------------- errors

_STATUS_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "refused",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}

_REASONS = {
    404: "не найдено",
    405: "такой метод здесь не поддерживается",
    408: "запрос не завершён вовремя",
    413: "слишком большой запрос",
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if _is_russian(exc.reason) else _REASONS.get(exc.status, "ошибка запроса")
        return _error(request, exc.status, message, headers=exc.headers)
    except InvalidInput as exc:
        problems = [{"field": p.field, "message": p.message if p.field else str(p)} for p in exc.problems]
        return _error(request, input_status(exc), "ошибки во входных данных", problems)
    except PolicyViolation as exc:
        return _error(request, 422, f"отказано: {exc}")
    except NotFound as exc:
        return _error(request, 404, str(exc))
    except Conflict as exc:
        return _error(request, 409, str(exc))
    except ZvonokError as exc:
        return _error(request, 400, str(exc))
    except Exception as exc:
        reason = unavailable(exc)
        if reason is not None:  # the work is safe in the store: nothing was half done
            log.warning("database unavailable on %s: %s", request.method, reason)
            return _error(request, 503, f"база данных недоступна ({reason}); повторите через минуту", retry=30)
        incident = secrets.token_hex(4)
        # the route's pattern, never the path itself: the parents' links carry a signed token in theirs
        route = request.match_info.route.resource
        log.exception("internal error %s on %s %s", incident, request.method, route.canonical if route else "?")
        return _error(request, 500, f"внутренняя ошибка (номер {incident}); сообщите администратору")
    _secure_headers(request, response)
    return response


def input_status(exc: InvalidInput) -> int:
    """400 for input that does not fit the form, 422 for input that fits but cannot be acted on."""
    return 422 if isinstance(exc, Unprocessable) else 400


def _is_russian(text: str) -> bool:
    return any("а" <= ch.lower() <= "я" for ch in text)


def _error(
    request: web.Request,
    status: int,
    message: str,
    problems: list[dict[str, str]] | None = None,
    headers: Any = None,
    retry: int | None = None,
) -> web.StreamResponse:
    keep = {k: v for k, v in (headers or {}).items() if k.lower() in ("location", "allow", "retry-after")}
    if retry is not None:
        keep["Retry-After"] = str(retry)
    if _is_api(request.path):
        body: dict[str, Any] = {"error": message, "code": _STATUS_CODES.get(status, "error")}
        if problems:
            body["problems"] = problems
        response: web.StreamResponse = web.json_response(body, status=status, headers=keep)
    else:
        response = render(
            request, "error.html", {"status": status, "message": message, "problems": problems or []}, status
        )
        response.headers.update(keep)
    _secure_headers(request, response)
    return response


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:
        return
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Content-Security-Policy", CSP)
    # a parents' link carries its token in the path: never hand it to another site
    h.setdefault("Referrer-Policy", "no-referrer" if request.path.startswith("/p/") else "same-origin")
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
