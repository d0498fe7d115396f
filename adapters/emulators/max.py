"""A protocol-faithful MAX Bot API server for tests, benchmarks and the demo.

It speaks the wire protocol of `platform-api2.max.ru` as described in `reference/protocols.md` §2 (OpenAPI schema
0.0.32 of 2026-07-01 and the official/third-party clients named there):

* Auth: the raw token in the `Authorization` header (no "Bearer"). A token in the `access_token` query draws
  403 `deprecated.token`; a missing or unknown token 401 `verify.token` "Invalid access_token".
* `POST /messages?chat_id=…|user_id=…[&disable_link_preview=…]` with the JSON `NewMessageBody`
  `{text, format, notify, attachments, link}` → `200 {"message": Message}`. Text is at most 4000 characters,
  counted in UTF-16 code units like the Java bean validation behind the real API (an inference: the message
  "text: size must be between 0 and 4000" is the `@Size` default). `format` is `markdown`, `html` or null; the
  stored `body.text` is the *rendered* text with tags removed and entities decoded, `body.markup` holds the
  formatting (offsets in UTF-16 units). There is **no deduplication**: the same body twice is two messages.
* Errors are `{"code", "message"}` with the statuses of §2.5: 400 `proto.payload`, 404 `chat.not.found`,
  403 `chat.denied`, 429 `too.many.requests` (per-token sliding one-second window, 30 by default; every 429 is
  counted), 500 `internal.error`, 503 `service.unavailable`, 502/504 as an HTML page from the "proxy".
* `GET /me`, `GET /chats` (unsupported since June 2026: 404 `not.found` by default), `GET /chats/{id}`,
  `GET|DELETE /chats/{id}/members/me`, `GET /messages?chat_id=…&count=…[&from=…&to=…]` (newest first; `from`
  the later and `to` the earlier bound of the messages' timestamps) or `?message_ids=…`,
  `POST|GET|DELETE /subscriptions`, `GET /updates` (long polling; 405 while a webhook is active).
* Webhook push of `bot_added` / `bot_removed` updates to every subscribed URL, with `X-Max-Bot-Api-Secret`.

Where the real API's behaviour is unknown (§5 of the brief) the emulator picks the documented guess and says so
in a comment: the `proto.payload` code for validation errors, the 404/403 statuses of `chat.not.found` /
`chat.denied`, the "admin is required to post in a group chat" rule.

Tests drive the state and the faults through Python methods, not HTTP::

    async with MaxEmulator(rate_limit=5) as emu:
        emu.add_bot("tok-1", "Школа 7")
        emu.add_chat(-100, "5А родители")
        emu.drop_next(1)                      # the next send is stored, then the connection is cut
        ... point the adapter at emu.base_url ...
        assert [m.text for m in emu.messages(-100)] == [...]
        assert emu.rate_limited_count("tok-1") == 0

Run it standalone with `python -m adapters.emulators.max --port 8081 --bot TOKEN:Имя --chat=-100:Название`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, ClassVar, Literal

from aiohttp import ClientError, ClientSession, ClientTimeout, web

__all__ = ["MaxEmulator", "StoredMessage", "run"]

MAX_TEXT = 4000
DEFAULT_RATE_LIMIT = 30.0
ALL_PERMISSIONS = (
    "read_all_messages",
    "write",
    "pin_message",
    "change_chat_info",
    "add_remove_members",
    "add_admins",
    "edit_link",
)
_WRITE_PERMISSIONS = {"write", "post_edit_delete_message"}
_SECRET = re.compile(r"^[a-zA-Z0-9_-]{5,256}$")
_INT64 = re.compile(r"^-?\d{1,19}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FaultKind = Literal["error", "delay", "hang", "drop"]


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _proxy_page(status: int) -> web.Response:
    """What the nginx in front of the API answers when the backend is down: HTML, not JSON."""
    reason = {502: "Bad Gateway", 504: "Gateway Time-out"}.get(status, "Error")
    body = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=body, content_type="text/html")


# ----------------------------------------------------------------------------------------------------
# Formatting: what the server stores as body.text / body.markup


class _HtmlRenderer(HTMLParser):
    _TAGS: ClassVar[dict[str, str]] = {
        "b": "strong",
        "strong": "strong",
        "i": "emphasized",
        "em": "emphasized",
        "del": "strikethrough",
        "s": "strikethrough",
        "ins": "underline",
        "u": "underline",
        "a": "link",
        "pre": "monospaced",
        "code": "monospaced",
        "mark": "highlighted",
        "h1": "heading",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.units = 0
        self.markup: list[dict[str, Any]] = []
        self._open: list[tuple[str, int, dict[str, Any]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kind = self._TAGS.get(tag)
        if kind is None:
            return  # "All other tags are stripped" (schema 0.0.32, Text formatting)
        extra: dict[str, Any] = {}
        if kind == "link":
            extra["url"] = dict(attrs).get("href") or ""
        self._open.append((tag, self.units, {"type": kind, **extra}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                _, start, element = self._open.pop(index)
                if self.units > start:
                    self.markup.append({**element, "from": start, "length": self.units - start})
                return

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.units += _utf16_len(data)


_MD = re.compile(
    r"\*\*(?P<strong>.+?)\*\*|__(?P<strong2>.+?)__|~~(?P<strike>.+?)~~|\+\+(?P<under>.+?)\+\+"
    r"|```(?P<pre>.+?)```|`(?P<code>[^`]+?)`|\^\^(?P<mark>.+?)\^\^|\[(?P<label>[^\]]+)\]\((?P<url>[^)\s]+)\)"
    r"|\*(?P<em>[^*]+?)\*|_(?P<em2>[^_]+?)_|^# (?P<head>.+)$",
    re.DOTALL | re.MULTILINE,
)
_MD_KIND = {
    "strong": "strong",
    "strong2": "strong",
    "strike": "strikethrough",
    "under": "underline",
    "pre": "monospaced",
    "code": "monospaced",
    "mark": "highlighted",
    "label": "link",
    "em": "emphasized",
    "em2": "emphasized",
    "head": "heading",
}


def render(text: str, fmt: str | None) -> tuple[str, list[dict[str, Any]] | None]:
    """The plain text and markup the server stores for `text` sent with `format=fmt`."""
    if fmt == "html":
        parser = _HtmlRenderer()
        parser.feed(text)
        parser.close()
        return "".join(parser.text), sorted(parser.markup, key=lambda m: m["from"]) or None
    if fmt == "markdown":
        out: list[str] = []
        units = 0
        markup: list[dict[str, Any]] = []
        position = 0
        for match in _MD.finditer(text):
            plain = text[position : match.start()]
            out.append(plain)
            units += _utf16_len(plain)
            group = next(name for name, value in match.groupdict().items() if value is not None)
            inner = match.group(group)
            element: dict[str, Any] = {"type": _MD_KIND[group], "from": units, "length": _utf16_len(inner)}
            if group == "label":
                element["url"] = match.group("url")
            markup.append(element)
            out.append(inner)
            units += _utf16_len(inner)
            position = match.end()
        out.append(text[position:])
        return "".join(out), markup or None
    return text, None


# ----------------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message a chat accepted, as the server keeps it."""

    mid: str
    seq: int
    chat_id: int
    sender_id: int
    sender_is_bot: bool
    timestamp: int
    text: str | None
    raw_text: str | None
    format: str | None
    markup: list[dict[str, Any]] | None
    notify: bool
    disable_link_preview: bool
    attachments: list[Any] | None
    link: dict[str, Any] | None


@dataclass(slots=True)
class _Bot:
    token: str
    user_id: int
    name: str
    username: str
    created: int


@dataclass(slots=True)
class _Membership:
    present: bool
    is_admin: bool
    permissions: list[str]
    join_time: int
    status: str = "active"  # active | removed | left


@dataclass(slots=True)
class _Chat:
    chat_id: int
    title: str
    type: str
    owner_id: int
    created: int
    members: dict[int, _Membership] = field(default_factory=dict)
    messages: list[StoredMessage] = field(default_factory=list)
    closed: bool = False
    next_seq: int = 1
    dialog_user_id: int | None = None


@dataclass(slots=True)
class _Fault:
    kind: FaultKind
    remaining: int
    chat_id: int | None
    method: str | None
    path: str | None
    status: int = 500
    code: str | None = None
    message: str | None = None
    seconds: float = 0.0
    store: bool = True
    after: int = 0

    def matches(self, request: web.Request, chat_id: int | None) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and request.method != self.method:
            return False
        if self.path is not None and request.path != self.path:
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass(slots=True)
class _Subscription:
    url: str
    time: int
    update_types: list[str] | None
    secret: str | None
    version: str | None


_BOT = web.RequestKey("bot", _Bot)

_ERROR_CODES = {500: "internal.error", 503: "service.unavailable", 504: "service.unavailable"}
_ERROR_TEXT = {
    "internal.error": "Error in processing request",
    "service.unavailable": "Service temporarily unavailable",
    "attachment.not.ready": "Key: errors.process.attachment.file.not.processed",
    "access.denied": "Access denied",
}


class MaxEmulator:
    """The MAX Bot API on loopback HTTP, with test hooks for state and faults. See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: float = DEFAULT_RATE_LIMIT,
        rate_window: float = 1.0,
        get_chats_status: int = 404,
        require_https_webhooks: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`rate_limit` requests per `rate_window` seconds per token (sliding window); `get_chats_status` is what
        the retired `GET /chats` answers (404 or 405). The real API accepts only https webhooks on port 443;
        the emulator allows plain http unless `require_https_webhooks`, so that local receivers work. With
        `ssl_context` it serves HTTPS, as the real host does."""
        self.host = host
        self.port = port
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.get_chats_status = get_chats_status
        self.require_https_webhooks = require_https_webhooks
        self.ssl_context = ssl_context
        self._clock = clock
        self._bots: dict[str, _Bot] = {}
        self._chats: dict[int, _Chat] = {}
        self._users: dict[int, str] = {}
        self._windows: dict[str, deque[float]] = {}
        self._limited: dict[str, int] = {}
        self._requests: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._drop_probability = 0.0
        self._drop_rng = random.Random()
        self._dropped = 0
        self._subscriptions: dict[int, dict[str, _Subscription]] = {}
        self._updates: dict[int, list[dict[str, Any]]] = {}
        self._update_signal = asyncio.Condition()
        self._closing = asyncio.Event()
        self._next_user_id = 9_000_000
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.app = self._make_app()

    # ------------------------------------------------------------------------------------------------
    # lifecycle

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the emulator is not started")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        self._closing.clear()
        self._runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=0.5
        )  # an access log would echo query strings
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._closing.set()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MaxEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------------
    # state API (tests and the demo)

    def add_bot(self, token: str, name: str = "Бот школы", *, username: str | None = None) -> int:
        """Register a bot token; returns the bot's user_id."""
        user_id = self._new_user_id()
        self._bots[token] = _Bot(
            token=token,
            user_id=user_id,
            name=name,
            username=username or f"school_{user_id}_bot",
            created=_now_ms(self._clock),
        )
        return user_id

    def add_user(self, user_id: int, name: str = "Родитель") -> None:
        """A person who may write in chats (`add_user_message`)."""
        self._users[user_id] = name

    def add_chat(
        self,
        chat_id: int,
        title: str,
        *,
        token: str | None = None,
        member: bool = True,
        admin: bool = True,
        permissions: Iterable[str] | None = None,
        chat_type: Literal["chat", "channel"] = "chat",
        owner_id: int | None = None,
    ) -> None:
        """Create a group chat or channel with the bot (`token`; every registered bot when None) in it.

        `member=False` leaves the bot out; `admin=False` makes it a plain member (which may not post: a bot must
        be an admin of a group chat to write in it, §2.8). `permissions` default to all admin rights incl. write.
        """
        owner = owner_id if owner_id is not None else self._new_user_id()
        self._users.setdefault(owner, "Классный руководитель")
        chat = _Chat(chat_id=chat_id, title=title, type=chat_type, owner_id=owner, created=_now_ms(self._clock))
        self._chats[chat_id] = chat
        for bot in self._bots_for(token):
            self.set_membership(chat_id, bot.token, member=member, admin=admin, permissions=permissions)

    def set_membership(
        self,
        chat_id: int,
        token: str,
        *,
        member: bool = True,
        admin: bool = True,
        permissions: Iterable[str] | None = None,
    ) -> None:
        chat = self._chats[chat_id]
        bot = self._bots[token]
        rights = list(permissions) if permissions is not None else list(ALL_PERMISSIONS)
        chat.members[bot.user_id] = _Membership(
            present=member,
            is_admin=admin,
            permissions=rights if admin else [],
            join_time=_now_ms(self._clock),
        )

    def close_chat(self, chat_id: int) -> None:
        """The chat was closed by its owner: nobody can post any more."""
        self._chats[chat_id].closed = True

    async def remove_bot_from_chat(self, chat_id: int, token: str | None = None, *, notify: bool = False) -> None:
        """Remove the bot (every bot when None) from the chat, mid-run; optionally push `bot_removed`."""
        chat = self._chats[chat_id]
        for bot in self._bots_for(token):
            membership = chat.members.get(bot.user_id)
            if membership is not None:
                membership.present = False
                membership.status = "removed"
            if notify:
                await self.emit(bot.token, self._chat_update("bot_removed", chat))

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """Everything the chat accepted, oldest first."""
        return list(self._chats[chat_id].messages)

    def add_user_message(self, chat_id: int, text: str, *, user_id: int | None = None) -> StoredMessage:
        """A person writes in the chat (for reconciliation tests: other traffic, quotes of our text)."""
        author = user_id if user_id is not None else self._chats[chat_id].owner_id
        self._users.setdefault(author, "Родитель")
        return self._store(self._chats[chat_id], author, False, text, None, True, False, None, None)

    def rate_limited_count(self, token: str) -> int:
        """How many 429 answers the token received."""
        return self._limited.get(token, 0)

    def request_count(self, token: str) -> int:
        """How many authenticated requests the token made (429s included)."""
        return self._requests.get(token, 0)

    @property
    def dropped_count(self) -> int:
        """How many responses were dropped (stored, then the connection cut)."""
        return self._dropped

    # ------------------------------------------------------------------------------------------------
    # fault injection: by default faults hit sends (POST /messages); `method`/`path` None matches everything

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        code: str | None = None,
        message: str | None = None,
        chat_id: int | None = None,
        method: str | None = "POST",
        path: str | None = "/messages",
        after: int = 0,
    ) -> None:
        """The next `count` matching requests (after letting `after` of them through) answer `status`
        (500 internal.error, 502/504 an HTML proxy page, 503 service.unavailable, or any status/code given)
        and store nothing."""
        fault = _Fault("error", count, chat_id, method, path, status=status, code=code, message=message, after=after)
        self._faults.append(fault)

    def delay_next(
        self,
        count: int,
        seconds: float,
        *,
        chat_id: int | None = None,
        method: str | None = "POST",
        path: str | None = "/messages",
        after: int = 0,
    ) -> None:
        """The next `count` matching requests are slow: they wait `seconds`, then are processed normally."""
        self._faults.append(_Fault("delay", count, chat_id, method, path, seconds=seconds, after=after))

    def hang_next(
        self,
        count: int = 1,
        *,
        store: bool = True,
        seconds: float = 3600.0,
        chat_id: int | None = None,
        method: str | None = "POST",
        path: str | None = "/messages",
        after: int = 0,
    ) -> None:
        """The next `count` matching requests never get an answer (until `seconds` pass or the emulator stops,
        then the connection is cut). With `store` the message is accepted first, as when a reply is lost."""
        fault = _Fault("hang", count, chat_id, method, path, seconds=seconds, store=store, after=after)
        self._faults.append(fault)

    def drop_next(self, count: int = 1, *, chat_id: int | None = None, after: int = 0) -> None:
        """The next `count` sends (after letting `after` through) are stored, then the connection is closed
        without a response."""
        self._faults.append(_Fault("drop", count, chat_id, "POST", "/messages", after=after))

    def drop_randomly(self, probability: float, *, seed: int | None = None) -> None:
        """Every send is, with `probability`, stored and then answered by a cut connection."""
        self._drop_probability = probability
        self._drop_rng = random.Random(seed)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._drop_probability = 0.0

    # ------------------------------------------------------------------------------------------------
    # webhook push

    async def emit_bot_added(self, chat_id: int, token: str | None = None) -> list[int]:
        """Push `bot_added` for the chat (to the given bot's, or every bot's, subscriptions)."""
        statuses: list[int] = []
        chat = self._chats[chat_id]
        for bot in self._bots_for(token):
            statuses += await self.emit(bot.token, self._chat_update("bot_added", chat))
        return statuses

    async def emit(self, token: str, update: Mapping[str, Any]) -> list[int]:
        """Record an update for long polling and POST it to every webhook of the bot that wants its type.

        Returns the HTTP status of each delivery (0 when the receiver could not be reached). The real API
        retries failed deliveries for hours; the emulator makes one attempt.
        """
        bot = self._bots[token]
        async with self._update_signal:
            self._updates.setdefault(bot.user_id, []).append(dict(update))
            self._update_signal.notify_all()
        statuses: list[int] = []
        for sub in list(self._subscriptions.get(bot.user_id, {}).values()):
            if sub.update_types and update.get("update_type") not in sub.update_types:
                continue
            headers = {"Content-Type": "application/json"}
            if sub.secret:
                headers["X-Max-Bot-Api-Secret"] = sub.secret
            if self._session is None:
                self._session = ClientSession(timeout=ClientTimeout(total=30))
            try:
                async with self._session.post(sub.url, data=json.dumps(update), headers=headers) as resp:
                    await resp.read()
                    statuses.append(resp.status)
            except (TimeoutError, OSError, ClientError):
                statuses.append(0)
        return statuses

    # ------------------------------------------------------------------------------------------------
    # internals

    def _new_user_id(self) -> int:
        self._next_user_id += 1
        return self._next_user_id

    def _bots_for(self, token: str | None) -> list[_Bot]:
        return list(self._bots.values()) if token is None else [self._bots[token]]

    def _user_json(self, user_id: int) -> dict[str, Any]:
        for bot in self._bots.values():
            if bot.user_id == user_id:
                return {
                    "user_id": bot.user_id,
                    "first_name": bot.name,
                    "last_name": None,
                    "username": bot.username,
                    "is_bot": True,
                    "last_activity_time": _now_ms(self._clock),
                    "name": bot.name,
                }
        name = self._users.get(user_id, "Пользователь")
        return {
            "user_id": user_id,
            "first_name": name,
            "last_name": None,
            "username": None,
            "is_bot": False,
            "last_activity_time": _now_ms(self._clock),
            "name": name,
        }

    def _chat_update(self, update_type: str, chat: _Chat) -> dict[str, Any]:
        return {
            "update_type": update_type,
            "timestamp": _now_ms(self._clock),
            "chat_id": chat.chat_id,
            "user": self._user_json(chat.owner_id),
            "is_channel": chat.type == "channel",
        }

    def _message_json(self, message: StoredMessage) -> dict[str, Any]:
        chat = self._chats[message.chat_id]
        is_channel = chat.type == "channel"
        return {
            "sender": self._user_json(message.sender_id),
            "recipient": {
                "chat_id": chat.chat_id,
                "chat_type": chat.type,
                "user_id": chat.dialog_user_id,
            },
            "timestamp": message.timestamp,
            "body": {
                "mid": message.mid,
                "seq": message.seq,
                "text": message.text,
                "attachments": message.attachments,
                "markup": message.markup,
            },
            "link": message.link,
            "stat": {"views": 0} if is_channel else None,
            "url": f"https://max.ru/c/{chat.chat_id}/{message.mid}" if is_channel else None,
        }

    def _store(
        self,
        chat: _Chat,
        sender_id: int,
        sender_is_bot: bool,
        raw: str | None,
        fmt: str | None,
        notify: bool,
        disable_link_preview: bool,
        attachments: list[Any] | None,
        link: dict[str, Any] | None,
    ) -> StoredMessage:
        text, markup = render(raw, fmt) if raw is not None else (None, None)
        message = StoredMessage(
            mid="mid." + secrets.token_hex(16),
            seq=chat.next_seq,
            chat_id=chat.chat_id,
            sender_id=sender_id,
            sender_is_bot=sender_is_bot,
            timestamp=_now_ms(self._clock),
            text=text,
            raw_text=raw,
            format=fmt,
            markup=markup,
            notify=notify,
            disable_link_preview=disable_link_preview,
            attachments=attachments,
            link=link,
        )
        chat.next_seq += 1
        chat.messages.append(message)
        return message

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/me", self._get_me)
        r.add_get("/chats", self._get_chats)
        r.add_get("/chats/{chat_id}", self._get_chat)
        r.add_get("/chats/{chat_id}/members/me", self._get_membership)
        r.add_delete("/chats/{chat_id}/members/me", self._leave_chat)
        r.add_post("/messages", self._post_message)
        r.add_get("/messages", self._get_messages)
        r.add_post("/subscriptions", self._subscribe)
        r.add_get("/subscriptions", self._get_subscriptions)
        r.add_delete("/subscriptions", self._unsubscribe)
        r.add_get("/updates", self._get_updates)
        return app

    # middleware: auth → rate limit → faults → handler; unknown routes answer JSON like the API

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if "access_token" in request.query:
            return _error(
                403,
                "deprecated.token",
                "Query parameter access_token is deprecated, use Authorization header",
            )
        bot = self._bots.get(request.headers.get("Authorization", ""))
        if bot is None:
            return _error(401, "verify.token", "Invalid access_token")
        request[_BOT] = bot
        self._requests[bot.token] = self._requests.get(bot.token, 0) + 1
        if not self._admit(bot.token):
            self._limited[bot.token] = self._limited.get(bot.token, 0) + 1
            return _error(429, "too.many.requests", "Too many requests, try again later")

        fault = self._take_fault(request)
        if fault is not None:
            return await self._apply_fault(fault, request, handler)
        if (
            self._drop_probability > 0
            and request.method == "POST"
            and request.path == "/messages"
            and self._drop_rng.random() < self._drop_probability
        ):
            return await self._apply_fault(_Fault("drop", 1, None, None, None), request, handler)
        return await self._dispatch(request, handler)

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed:
            return _error(405, "method.not.allowed", f"Method {request.method} is not allowed")
        except web.HTTPNotFound:
            return _error(404, "not.found", f"Path {request.path} not found")

    async def _apply_fault(self, fault: _Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
        if fault.kind == "error":
            if fault.status in (502, 504) and fault.code is None:
                return _proxy_page(fault.status)
            code = fault.code or _ERROR_CODES.get(fault.status, "internal.error")
            return _error(fault.status, code, fault.message or _ERROR_TEXT.get(code, code))
        if fault.kind == "delay":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.seconds)
            return await self._dispatch(request, handler)
        if fault.store:  # drop, hang: the API did its work; only the answer is lost
            await self._dispatch(request, handler)
        if fault.kind == "hang":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.seconds)
        self._dropped += fault.kind == "drop"
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)  # never reaches the client: the connection is gone

    def _take_fault(self, request: web.Request) -> _Fault | None:
        chat_id = _query_chat_id(request)
        chosen = None
        for fault in self._faults:
            if not fault.matches(request, chat_id):
                continue
            if fault.after > 0:
                fault.after -= 1  # this request passes the fault
                continue
            fault.remaining -= 1
            chosen = fault
            break
        self._faults = [f for f in self._faults if f.remaining > 0]
        return chosen

    def _admit(self, token: str) -> bool:
        now = time.monotonic()
        window = self._windows.setdefault(token, deque())
        while window and now - window[0] >= self.rate_window:
            window.popleft()
        if len(window) >= self.rate_limit:
            return False
        window.append(now)
        return True

    def _chat_or_error(self, raw: str) -> _Chat | web.Response:
        if not _INT64.match(raw):
            return _error(400, "proto.payload", f"Invalid chat id: {raw}")
        chat = self._chats.get(int(raw))
        if chat is None:
            return _error(404, "chat.not.found", f"Chat {raw} not found")
        return chat

    def _membership(self, request: web.Request, chat: _Chat) -> _Membership | None:
        bot: _Bot = request[_BOT]
        return chat.members.get(bot.user_id)

    def _chat_json(self, chat: _Chat, status: str) -> dict[str, Any]:
        last = chat.messages[-1].timestamp if chat.messages else chat.created
        present = [m for m in chat.members.values() if m.present]
        return {
            "chat_id": chat.chat_id,
            "type": chat.type,
            "status": status,
            "title": chat.title,
            "icon": None,
            "last_event_time": last,
            "participants_count": len(present) + 1,
            "owner_id": chat.owner_id,
            "participants": None,
            "is_public": False,
            "link": None,
            "description": None,
            "dialog_with_user": None,
            "messages_count": len(chat.messages),
            "pinned_message": None,
        }

    # handlers

    async def _get_me(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        info = self._user_json(bot.user_id)
        info.update(description="Бот школьных объявлений", avatar_url=None, full_avatar_url=None, commands=None)
        return web.json_response(info)

    async def _get_chats(self, request: web.Request) -> web.StreamResponse:
        # "Начиная с июня 2026 метод GET /chats больше не поддерживается" (schema 0.0.32); the exact answer is
        # unknown (§5 q4), so the status is configurable.
        code = "not.found" if self.get_chats_status == 404 else "method.not.allowed"
        return _error(self.get_chats_status, code, "Method GET /chats is no longer supported")

    async def _get_chat(self, request: web.Request) -> web.StreamResponse:
        found = self._chat_or_error(request.match_info["chat_id"])
        if isinstance(found, web.Response):
            return found
        membership = self._membership(request, found)
        if membership is None:
            return _error(404, "chat.not.found", f"Chat {found.chat_id} not found")
        status = "closed" if found.closed else membership.status
        return web.json_response(self._chat_json(found, status))

    async def _get_membership(self, request: web.Request) -> web.StreamResponse:
        found = self._chat_or_error(request.match_info["chat_id"])
        if isinstance(found, web.Response):
            return found
        membership = self._membership(request, found)
        if membership is None:
            return _error(404, "chat.not.found", f"Chat {found.chat_id} not found")
        if not membership.present:
            return _error(403, "chat.denied", "Bot is not a member of the chat")
        bot: _Bot = request[_BOT]
        info = self._user_json(bot.user_id)
        info.update(
            description=None,
            avatar_url=None,
            full_avatar_url=None,
            last_access_time=_now_ms(self._clock),
            is_owner=False,
            is_admin=membership.is_admin,
            join_time=membership.join_time,
            permissions=list(membership.permissions) if membership.is_admin else None,
        )
        return web.json_response(info)

    async def _leave_chat(self, request: web.Request) -> web.StreamResponse:
        found = self._chat_or_error(request.match_info["chat_id"])
        if isinstance(found, web.Response):
            return found
        membership = self._membership(request, found)
        if membership is None or not membership.present:
            return _error(403, "chat.denied", "Bot is not a member of the chat")
        membership.present = False
        membership.status = "left"
        return web.json_response({"success": True})

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        targets = [name for name in ("chat_id", "user_id") if name in request.query]
        if len(targets) != 1:
            return _error(400, "proto.payload", "Exactly one of chat_id or user_id must be specified")
        raw_target = request.query[targets[0]]
        if not _INT64.match(raw_target):
            return _error(400, "proto.payload", f"Invalid {targets[0]}: {raw_target}")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "proto.payload", "Failed to parse request body")
        if not isinstance(body, dict):
            return _error(400, "proto.payload", "Request body must be a JSON object")
        text = body.get("text")
        fmt = body.get("format")
        notify = body.get("notify", True)
        attachments = body.get("attachments")
        link = body.get("link")
        if text is not None and not isinstance(text, str):
            return _error(400, "proto.payload", "text: must be a string")
        if isinstance(text, str) and _utf16_len(text) > MAX_TEXT:
            return _error(400, "proto.payload", f"text: size must be between 0 and {MAX_TEXT}")
        if fmt not in (None, "markdown", "html"):
            return _error(400, "proto.payload", f"Invalid value for format: {fmt}")
        if not isinstance(notify, bool):
            return _error(400, "proto.payload", "notify: must be a boolean")
        if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) and "type" in a for a in attachments)
        ):
            return _error(400, "proto.payload", "attachments: invalid attachment request")
        if link is not None and not (isinstance(link, dict) and link.get("type") in ("forward", "reply")):
            return _error(400, "proto.payload", "link: invalid message link")
        if not text and not attachments and link is None:
            return _error(400, "proto.payload", "Message text or attachments must be specified")
        disable_preview = request.query.get("disable_link_preview", "false").lower() == "true"

        if targets[0] == "user_id":
            chat = self._dialog(bot, int(raw_target))
            if chat is None:
                return _error(403, "chat.denied", "Dialog with the user is not started")
        else:
            found = self._chats.get(int(raw_target))
            if found is None:
                # 404 is a guess (§2.5: "4xx (404?) chat.not.found"); aiomax matches on the code only.
                return _error(404, "chat.not.found", f"Chat {raw_target} not found")
            chat = found
            membership = chat.members.get(bot.user_id)
            if membership is None or not membership.present:
                return _error(403, "chat.denied", "Bot is not a member of the chat")
            if chat.closed:
                return _error(403, "chat.denied", "Chat is closed")
            # A bot must be an admin to post in a group chat (§2.8); a channel post needs the write right.
            if not membership.is_admin:
                return _error(403, "chat.denied", "Method is available only for chat administrator")
            if chat.type == "channel" and not _WRITE_PERMISSIONS & set(membership.permissions):
                return _error(403, "chat.denied", "Bot has no permission to write to the channel")
        stored = self._store(chat, bot.user_id, True, text, fmt, notify, disable_preview, attachments, link)
        return web.json_response({"message": self._message_json(stored)})

    def _dialog(self, bot: _Bot, user_id: int) -> _Chat | None:
        """A DM works only with a user who started the bot (registered with `add_user`)."""
        if user_id not in self._users:
            return None
        chat_id = user_id  # dialogs get the user's id; group chats are negative
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = _Chat(
                chat_id=chat_id,
                title="",
                type="dialog",
                owner_id=user_id,
                created=_now_ms(self._clock),
                dialog_user_id=user_id,
            )
            chat.members[bot.user_id] = _Membership(True, False, [], _now_ms(self._clock))
            self._chats[chat_id] = chat
        return chat

    async def _get_messages(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        if "message_ids" in request.query:
            wanted = {mid for mid in request.query["message_ids"].split(",") if mid}
            found = [
                self._message_json(m)
                for chat in self._chats.values()
                if (ms := chat.members.get(bot.user_id)) is not None and ms.present
                for m in chat.messages
                if m.mid in wanted
            ]
            return web.json_response({"messages": found})
        if "chat_id" not in request.query:
            return _error(400, "proto.payload", "Either chat_id or message_ids must be specified")
        try:
            count = int(request.query.get("count", "50"))
        except ValueError:
            return _error(400, "proto.payload", "count: must be an integer")
        if not 1 <= count <= 100:
            return _error(400, "proto.payload", "count: must be between 1 and 100")
        chat_or_error = self._chat_or_error(request.query["chat_id"])
        if isinstance(chat_or_error, web.Response):
            return chat_or_error
        membership = chat_or_error.members.get(bot.user_id)
        if membership is None or not membership.present:
            return _error(403, "chat.denied", "Bot has no access to the chat")
        # `from` and `to` bound the messages' `timestamp` (in its unit, milliseconds), newest first, so `to` is the
        # earlier one ("to должно быть меньше, чем from": dev.max.ru/docs-api/methods/GET/messages); both inclusive.
        bounds = []
        for name in ("from", "to"):
            raw = request.query.get(name)
            try:
                bounds.append(None if raw is None else int(raw))
            except ValueError:
                return _error(400, "proto.payload", f"{name}: must be an integer")
        newest, oldest = bounds
        if newest is not None and oldest is not None and oldest > newest:
            return _error(400, "proto.payload", "to: must be less than from")
        newest_first = [
            m
            for m in reversed(chat_or_error.messages)
            if (newest is None or m.timestamp <= newest) and (oldest is None or m.timestamp >= oldest)
        ][:count]
        return web.json_response({"messages": [self._message_json(m) for m in newest_first]})

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "proto.payload", "Failed to parse request body")
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _error(400, "proto.payload", "url: must be a valid URL")
        if self.require_https_webhooks and not url.startswith("https://"):
            return _error(400, "proto.payload", "url: only HTTPS webhooks are supported")
        secret = body.get("secret")
        if secret is not None and not (isinstance(secret, str) and _SECRET.match(secret)):
            return _error(400, "proto.payload", "secret: must match ^[a-zA-Z0-9_-]{5,256}$")
        types = body.get("update_types")
        if types is not None and not (isinstance(types, list) and all(isinstance(t, str) for t in types)):
            return _error(400, "proto.payload", "update_types: must be a list of strings")
        self._subscriptions.setdefault(bot.user_id, {})[url] = _Subscription(
            url=url,
            time=_now_ms(self._clock),
            update_types=types,
            secret=secret,
            version=body.get("version"),
        )
        return web.json_response({"success": True})

    async def _get_subscriptions(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        subs = [
            {"url": s.url, "time": s.time, "update_types": s.update_types}
            for s in self._subscriptions.get(bot.user_id, {}).values()
        ]
        return web.json_response({"subscriptions": subs})

    async def _unsubscribe(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        url = request.query.get("url")
        if not url:
            return _error(400, "proto.payload", "url: must not be empty")
        removed = self._subscriptions.get(bot.user_id, {}).pop(url, None)
        if removed is None:
            return web.json_response({"success": False, "message": "Subscription not found"})
        return web.json_response({"success": True})

    async def _get_updates(self, request: web.Request) -> web.StreamResponse:
        bot: _Bot = request[_BOT]
        if self._subscriptions.get(bot.user_id):
            return _error(405, "method.not.allowed", "Long polling is disabled while a webhook is active")
        try:
            limit = int(request.query.get("limit", "100"))
            timeout = int(request.query.get("timeout", "30"))
            marker = int(request.query["marker"]) if request.query.get("marker") else None
        except ValueError:
            return _error(400, "proto.payload", "limit, timeout and marker must be integers")
        if not (1 <= limit <= 1000 and 0 <= timeout <= 90):
            return _error(400, "proto.payload", "limit: 1..1000, timeout: 0..90")
        types = {t for t in request.query.get("types", "").split(",") if t}
        log = self._updates.setdefault(bot.user_id, [])
        start = marker if marker is not None else max(len(log) - 1, 0)

        def pending() -> list[int]:
            return [i for i in range(start, len(log)) if not types or log[i].get("update_type") in types]

        if not pending() and timeout:
            async with self._update_signal:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._update_signal.wait_for(lambda: bool(pending())), timeout)
        chosen = pending()[:limit]
        # the marker points past the last update returned (or past everything seen, when none matched)
        next_marker = chosen[-1] + 1 if chosen else len(log)
        return web.json_response({"updates": [log[i] for i in chosen], "marker": next_marker})


def _query_chat_id(request: web.Request) -> int | None:
    raw = request.query.get("chat_id") or request.match_info.get("chat_id")
    if raw and _INT64.match(raw):
        return int(raw)
    return None


# ----------------------------------------------------------------------------------------------------
# standalone


def _parse_pairs(values: Sequence[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        head, _, tail = value.partition(":")
        pairs.append((head, tail))
    return pairs


async def _serve(args: argparse.Namespace) -> None:
    emulator = MaxEmulator(host=args.host, port=args.port, rate_limit=args.rate_limit)
    for token, name in _parse_pairs(args.bot):
        emulator.add_bot(token, name or "Бот школы")
    for chat_id, title in _parse_pairs(args.chat):
        emulator.add_chat(int(chat_id), title or f"Чат {chat_id}")
    async with emulator:
        print(f"MAX emulator on {emulator.base_url}", flush=True)
        await asyncio.Event().wait()


def run(argv: Sequence[str] | None = None) -> int:
    """`python -m adapters.emulators.max [--host H] [--port N] [--rate-limit R] [--bot TOKEN[:NAME]]…
    [--chat=CHAT_ID[:TITLE]]…`: serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m adapters.emulators.max", description=run.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--rate-limit", type=float, default=DEFAULT_RATE_LIMIT)
    parser.add_argument("--bot", action="append", default=[], help="TOKEN[:NAME], repeatable")
    parser.add_argument(
        "--chat", action="append", default=[], help="CHAT_ID[:TITLE], repeatable; write --chat=-100:… for negative ids"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
