"""A protocol-faithful VK API server for the demo and the tests (see reference/protocols.md §1).

What it speaks, as VK does:

* `GET|POST /method/<name>`; parameters from the query string merged with a urlencoded or multipart form body
  (a JSON body counts as no parameters); the token as `access_token` or `Authorization: Bearer <token>`;
  `v` is mandatory.
* Always HTTP 200 with `{"response": ...}` or `{"error": {"error_code", "error_msg", "request_params"}}`;
  `request_params` echoes `method`, `oauth`, `v` and the other parameters, never the token.
* `messages.send` (single `peer_id` / `chat_id` form and the `peer_ids` array form), with dedup on
  (sender community, random_id != 0) over the whole history: a duplicate creates nothing and answers with the
  original message id. Results are per peer: a repeated `peer_ids` send answers each peer the message the
  random_id created there; a peer the first send could not reach holds no message with that random_id, so it is
  tried again (a failed send does not burn its random_id); a peer the first send did not address is a
  duplicate of that send and gets nothing, only the original message id.
* `messages.getConversations`: the community's chats, for peer discovery.
* `execute` with the VKScript subset a batching client sends (below); at most 25 `API.` calls; a failed inner
  call yields `false` plus an `execute_errors` entry. One execute is one request against the rate limit.
* A per-token sliding one-second rate limit (error 6), and fault injection from Python.

The accepted VKScript subset: optional `var name = <expr>;` statements followed by `return <expr>;`, where an
expression is a JSON-like literal (object with identifier or quoted keys, array, single- or double-quoted
string, number, true / false / null), a variable name, or an API call `API.<section>.<method>(<object>?)`.
Comments (`//`, `/* */`) are allowed. No operators. Anything else is error 12; more than 25 API calls in the
code is error 13 before any call runs.

Run standalone: `python -m adapters.emulators.vk --port 8081 --community TOKEN:GROUP_ID --chat 1:"5А"`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from aiohttp import web

from adapters.text import utf16_length

CHAT_PEER_OFFSET = 2_000_000_000
MAX_PEER_IDS = 100
MAX_EXECUTE_CALLS = 25

# error_msg texts of VKCOM/vk-api-schema errors.json (v5.199), §1.7.
ERROR_MESSAGES: dict[int, str] = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed",
    6: "Too many requests per second",
    7: "Permission to perform this action is denied",
    8: "Invalid request",
    9: "Flood control",
    10: "Internal server error",
    12: "Unable to compile code",
    13: "Runtime error occurred during code invocation",
    14: "Captcha needed",
    15: "Access denied",
    18: "User was deleted or banned",
    29: "Rate limit reached",
    100: "One of the parameters specified was missing or invalid",
    900: "Can't send messages for users from blacklist",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    910: "Can't sent this message, because it's too big",
    913: "Too many forwarded messages",
    914: "Message is too long",
    917: "You don't have access to this chat",
    921: "Can't forward these messages",
    925: "You are not admin of this chat",
    927: "Chat does not exist",
    932: "Your community can't interact with this peer",
    935: "User not found in chat",
    936: "Contact not found",
    940: "Too many posts in messages",
    945: "Chat was disabled",
    946: "Chat not supported",
    950: "Can't send message, reply timed out",
    985: "Cannot write to notifications only groups",
    1012: "Writing is disabled for this chat",
}

_INVALID_TOKEN = "User authorization failed: invalid access_token (4)."  # noqa: S105 - an error text
_NO_TOKEN = "User authorization failed: no access_token passed."  # noqa: S105 - an error text
_PARAM = ERROR_MESSAGES[100]
_NO_RANDOM_ID = f"{_PARAM}: random_id is a required parameter"
_NO_PEER = f"{_PARAM}: you should specify peer_id, user_id, domain, chat_id or user_ids param"


class ChatState(StrEnum):
    """How a chat treats the community's messages."""

    ACTIVE = "active"
    READ_ONLY = "read_only"  # error 1012 (the fate of Sferum-in-VK chats)
    DISABLED = "disabled"  # error 945
    KICKED = "kicked"  # the bot was removed: error 917


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message a chat accepted."""

    message_id: int
    conversation_message_id: int
    peer_id: int
    from_id: int
    text: str
    random_id: int
    date: int


@dataclass(slots=True)
class _Chat:
    chat_id: int
    title: str
    state: ChatState
    group_id: int | None  # None: every community of the emulator is a member
    messages: list[StoredMessage] = field(default_factory=list)

    @property
    def peer_id(self) -> int:
        return CHAT_PEER_OFFSET + self.chat_id


FaultKind = Literal["error", "http", "hang", "drop"]


@dataclass(slots=True)
class _Fault:
    kind: FaultKind
    remaining: int
    method: str | None
    code: int = 0
    status: int = 500
    after_processing: bool = False
    peer_id: int | None = None


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """An API call the emulator evaluated for a token: a top-level request, or a call inside an execute."""

    request: int  # the number (from 1) of the token's request that carried it, as counted by `requests`
    method: str
    params: dict[str, str]  # without the token
    inner: bool = False  # inside an execute

    @property
    def random_id(self) -> int | None:
        try:
            return int(self.params["random_id"])
        except (KeyError, ValueError):
            return None


@dataclass(slots=True)
class _SendRecord:
    """What a (community, random_id) created: the peers its first send addressed and the message per peer."""

    addressed: frozenset[int]
    stored: dict[int, StoredMessage]


class _ApiError(Exception):
    def __init__(self, code: int, msg: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.msg = msg if msg is not None else ERROR_MESSAGES.get(code, "Unknown error occurred")
        self.extra = extra or {}


class _CompileError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    args: Any


@dataclass(frozen=True, slots=True)
class _Var:
    name: str


class VkEmulator:
    """A VK API server on 127.0.0.1 for tests and the demo. Use `async with VkEmulator() as emu:`.

    `rate_limit` is requests per second per token over a sliding one-second window (error 6 above it);
    `message_limit` is the longest accepted text in UTF-16 code units, as VK counts (error 914 above it); `hang_seconds`
    bounds an injected hang.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: int = 20,
        message_limit: int = 4096,
        hang_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.rate_limit = rate_limit
        self.message_limit = message_limit
        self.hang_seconds = hang_seconds
        self._clock = clock
        self._communities: dict[str, int] = {}
        self._chats: dict[int, _Chat] = {}
        self._dedup: dict[tuple[int, int], _SendRecord] = {}
        self._calls: dict[str, list[RecordedCall]] = {}
        self._message_ids: Counter[int] = Counter()
        self._windows: dict[str, deque[float]] = {}
        self._requests: Counter[str] = Counter()
        self._sends: Counter[str] = Counter()
        self._errors_6: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._chaos: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._rng = random.Random(0)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/method/{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.base_url = f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> VkEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- state -----------------------------------------------------------------------------------------

    def add_community(self, token: str, group_id: int) -> None:
        """Register a community and its token (one community may have several tokens)."""
        if group_id <= 0:
            raise ValueError("group_id must be positive")
        self._communities[token] = group_id

    def revoke_token(self, token: str) -> None:
        """Make a token invalid from now on (error 5)."""
        self._communities.pop(token, None)

    def add_chat(
        self,
        chat_id: int,
        title: str,
        state: ChatState | str = ChatState.ACTIVE,
        *,
        group_id: int | None = None,
    ) -> int:
        """Create a chat with the community `group_id` (every community when None) as a member.

        Returns the chat's peer id (2000000000 + chat_id)."""
        if not 0 < chat_id <= 100_000_000:
            raise ValueError("chat_id must be within 1..100000000")
        chat = _Chat(chat_id, title, ChatState(state), group_id)
        self._chats[chat.peer_id] = chat
        return chat.peer_id

    def set_chat_state(self, chat_id: int, state: ChatState | str) -> None:
        self._chats[CHAT_PEER_OFFSET + chat_id].state = ChatState(state)

    def messages(self, peer_id: int) -> list[StoredMessage]:
        """What the chat accepted, in order."""
        chat = self._chats.get(peer_id)
        return list(chat.messages) if chat else []

    def requests(self, token: str) -> int:
        """HTTP requests with this valid token that got past the rate limit (an execute counts once)."""
        return self._requests[token]

    def calls(self, token: str, *, method: str | None = None) -> list[RecordedCall]:
        """Every API call evaluated for this token, in order: the requests `requests` counts (an injected error
        included) and the calls inside each execute, right after their execute."""
        return [c for c in self._calls.get(token, []) if method is None or c.method == method]

    def sends(self, token: str) -> int:
        """messages.send calls evaluated for this token, top-level and inside execute."""
        return self._sends[token]

    def rate_limit_errors(self, token: str) -> int:
        """Every error 6 issued to this token (rate limit and injected)."""
        return self._errors_6[token]

    # --- fault injection -------------------------------------------------------------------------------

    def fail_next(self, code: int, times: int = 1, *, method: str | None = None, peer_id: int | None = None) -> None:
        """The next `times` calls (of `method`, also inside execute; of any top-level request when None;
        only those addressed to `peer_id` if given) answer API error `code`. Code 14 carries captcha_sid
        and captcha_img."""
        self._faults.append(_Fault("error", times, method, code=code, peer_id=peer_id))

    def http_error_next(self, status: int = 502, times: int = 1, *, method: str | None = None) -> None:
        """The next `times` requests answer a bare HTTP `status` (5xx) without processing."""
        self._faults.append(_Fault("http", times, method, status=status))

    def hang_next(self, times: int = 1, *, after_processing: bool = False, method: str | None = None) -> None:
        """The next `times` requests never answer (until `hang_seconds`); processed first if asked."""
        self._faults.append(_Fault("hang", times, method, after_processing=after_processing))

    def drop_next(self, times: int = 1, *, method: str | None = None) -> None:
        """The next `times` requests are processed (messages stored), then closed without an answer."""
        self._faults.append(_Fault("drop", times, method, after_processing=True))

    def chaos(self, *, drop: float = 0.0, hang: float = 0.0, http_error: float = 0.0, seed: int = 0) -> None:
        """Random faults on every request: dropped responses, hangs (half before, half after processing)
        and HTTP 502, with the given probabilities. All zero turns chaos off."""
        self._chaos = (drop, hang, http_error)
        self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        self._faults.clear()
        self._chaos = (0.0, 0.0, 0.0)

    def _take_fault(
        self,
        kinds: tuple[FaultKind, ...],
        method: str,
        params: dict[str, str],
        *,
        inner: bool = False,
    ) -> _Fault | None:
        for fault in self._faults:
            if fault.kind not in kinds or fault.remaining <= 0:
                continue
            if fault.method is None and inner:
                continue
            if fault.method is not None and fault.method != method:
                continue
            if fault.peer_id is not None and params.get("peer_id", "").strip() != str(fault.peer_id):
                continue
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
            return fault
        return None

    def _chaos_fault(self) -> _Fault | None:
        drop, hang, http_error = self._chaos
        if not (drop or hang or http_error):
            return None
        roll = self._rng.random()
        if roll < drop:
            return _Fault("drop", 1, None, after_processing=True)
        if roll < drop + hang:
            return _Fault("hang", 1, None, after_processing=self._rng.random() < 0.5)
        if roll < drop + hang + http_error:
            return _Fault("http", 1, None, status=502)
        return None

    # --- HTTP ------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["name"]
        params = await _read_params(request)
        token = params.pop("access_token", None)
        if token is None:
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                token = auth[7:].strip() or None

        fault = self._take_fault(("http", "hang", "drop"), method, params) or self._chaos_fault()
        if fault is not None and fault.kind == "http":
            return web.Response(status=fault.status, text=f"{fault.status} error")
        if fault is not None and fault.kind == "hang" and not fault.after_processing:
            return await self._hang(request)

        body = self._answer(method, params, token)

        if fault is not None and fault.kind == "hang":
            return await self._hang(request)
        if fault is not None and fault.kind == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        return web.Response(text=json.dumps(body, ensure_ascii=False), content_type="application/json", charset="utf-8")

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.hang_seconds)
        if request.transport is not None:
            request.transport.abort()
        return web.Response()

    def _answer(self, method: str, params: dict[str, str], token: str | None) -> dict[str, Any]:
        try:
            if "v" not in params:
                raise _ApiError(8, "Invalid request: v (version) is required")
            if token is None:
                raise _ApiError(5, _NO_TOKEN)
            group_id = self._communities.get(token)
            if group_id is None:
                raise _ApiError(5, _INVALID_TOKEN)
            self._check_rate(token)
            self._requests[token] += 1
            self._record(token, method, params)
            fault = self._take_fault(("error",), method, params)
            if fault is not None:
                raise _injected(fault.code)
            if method == "execute":
                return self._execute(token, group_id, params)
            return {"response": self._call(token, group_id, method, params)}
        except _ApiError as error:
            if error.code == 6 and token is not None:
                self._errors_6[token] += 1
            payload: dict[str, Any] = {"error_code": error.code, "error_msg": error.msg, **error.extra}
            payload["request_params"] = _echo(method, params)
            return {"error": payload}

    def _record(self, token: str, method: str, params: dict[str, str], *, inner: bool = False) -> None:
        call = RecordedCall(self._requests[token], method, dict(params), inner)
        self._calls.setdefault(token, []).append(call)

    def _check_rate(self, token: str) -> None:
        now = self._clock()
        window = self._windows.setdefault(token, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:
            raise _ApiError(6)
        window.append(now)

    # --- methods ---------------------------------------------------------------------------------------

    def _call(self, token: str, group_id: int, method: str, params: dict[str, str]) -> Any:
        if method == "messages.send":
            self._sends[token] += 1
            return self._messages_send(group_id, params)
        if method == "messages.getConversations":
            return self._get_conversations(group_id, params)
        raise _ApiError(3)

    def _messages_send(self, group_id: int, params: dict[str, str]) -> Any:
        if "random_id" not in params:
            raise _ApiError(100, _NO_RANDOM_ID)
        random_id = _int_param(params, "random_id")
        peers, array_form = self._peers(params)
        text = params.get("message", "")
        if not text and not params.get("attachment"):
            raise _ApiError(100, f"{_PARAM}: message is empty or invalid")

        record = self._dedup.get((group_id, random_id)) if random_id else None
        to_try = [p for p in peers if record is None or (p in record.addressed and p not in record.stored)]
        if to_try and utf16_length(text) > self.message_limit:
            raise _ApiError(914)

        items: list[dict[str, Any]] = []
        stored: dict[int, StoredMessage] = {}
        for peer in peers:
            original = record.stored.get(peer) if record is not None else None
            if original is None:
                original = stored.get(peer)  # the same peer twice in one peer_ids
            if original is not None:
                items.append(_item(original))
                continue
            if record is not None and peer not in record.addressed:
                # a duplicate of a send to other peers: nothing new, the original message id
                items.append({**_item(next(iter(record.stored.values()))), "peer_id": peer})
                continue
            try:
                chat = self._writable_chat(group_id, peer)
            except _ApiError as error:
                if not array_form:
                    raise
                items.append({"peer_id": peer, "error": {"code": error.code, "description": error.msg}})
                continue
            self._message_ids[group_id] += 1
            message = StoredMessage(
                message_id=self._message_ids[group_id],
                conversation_message_id=len(chat.messages) + 1,
                peer_id=peer,
                from_id=-group_id,
                text=text,
                random_id=random_id,
                date=int(time.time()),
            )
            chat.messages.append(message)
            stored[peer] = message
            items.append(_item(message))
        if random_id and stored:
            if record is None:
                self._dedup[(group_id, random_id)] = _SendRecord(frozenset(peers), stored)
            else:
                record.stored.update(stored)
        return items if array_form else items[0]["message_id"]

    def _peers(self, params: dict[str, str]) -> tuple[list[int], bool]:
        for name in ("peer_ids", "user_ids"):
            if params.get(name):
                peers = [_to_int(part, name) for part in params[name].split(",") if part.strip()]
                if len(peers) > MAX_PEER_IDS:
                    raise _ApiError(100, f"{_PARAM}: {name} is too long (max {MAX_PEER_IDS})")
                return peers, True
        if params.get("peer_id"):
            return [_int_param(params, "peer_id")], False
        if params.get("chat_id"):
            return [CHAT_PEER_OFFSET + _int_param(params, "chat_id")], False
        if params.get("user_id"):
            return [_int_param(params, "user_id")], False
        if params.get("domain"):
            raise _ApiError(901)
        raise _ApiError(100, _NO_PEER)

    def _writable_chat(self, group_id: int, peer: int) -> _Chat:
        if peer < 0:
            raise _ApiError(932)
        if peer < CHAT_PEER_OFFSET:
            raise _ApiError(901)
        chat = self._chats.get(peer)
        if chat is None or (chat.group_id is not None and chat.group_id != group_id):
            raise _ApiError(917)
        if chat.state is ChatState.KICKED:
            raise _ApiError(917)
        if chat.state is ChatState.DISABLED:
            raise _ApiError(945)
        if chat.state is ChatState.READ_ONLY:
            raise _ApiError(1012)
        return chat

    def _get_conversations(self, group_id: int, params: dict[str, str]) -> Any:
        offset = _int_param(params, "offset") if params.get("offset") else 0
        count = _int_param(params, "count") if params.get("count") else 20
        if not 0 <= count <= 200 or offset < 0:
            raise _ApiError(100, f"{_PARAM}: count should be within 0..200")
        chats = [c for c in self._chats.values() if c.group_id in (None, group_id)]
        chats.sort(key=lambda c: (-(c.messages[-1].message_id if c.messages else 0), c.chat_id))
        items = [_conversation(chat, group_id) for chat in chats[offset : offset + count]]
        return {"count": len(chats), "items": items}

    def _execute(self, token: str, group_id: int, params: dict[str, str]) -> dict[str, Any]:
        code = params.get("code")
        if not code:
            raise _ApiError(100, f"{_PARAM}: code is undefined")
        try:
            program = _Parser(code).program()
        except _CompileError as error:
            raise _ApiError(12, f"{ERROR_MESSAGES[12]}: {error}") from None
        if sum(1 for _ in _calls_in(program)) > MAX_EXECUTE_CALLS:
            raise _ApiError(13, f"{ERROR_MESSAGES[13]}: Too many API calls")

        errors: list[dict[str, Any]] = []
        env: dict[str, Any] = {}

        def evaluate(node: Any) -> Any:
            if isinstance(node, _Call):
                args = evaluate(node.args) if node.args is not None else {}
                if not isinstance(args, dict):
                    raise _ApiError(13, f"{ERROR_MESSAGES[13]}: API call argument must be an object")
                inner = {str(k): _vkscript_str(v) for k, v in args.items() if v is not None}
                self._record(token, node.method, inner, inner=True)
                try:
                    fault = self._take_fault(("error",), node.method, inner, inner=True)
                    if fault is not None:
                        raise _injected(fault.code)
                    if node.method == "execute":
                        raise _ApiError(3)
                    return self._call(token, group_id, node.method, inner)
                except _ApiError as error:
                    if error.code == 6:
                        self._errors_6[token] += 1
                    errors.append({"method": node.method, "error_code": error.code, "error_msg": error.msg})
                    return False
            if isinstance(node, _Var):
                if node.name not in env:
                    raise _ApiError(13, f"{ERROR_MESSAGES[13]}: {node.name} is not defined")
                return env[node.name]
            if isinstance(node, list):
                return [evaluate(item) for item in node]
            if isinstance(node, dict):
                return {key: evaluate(value) for key, value in node.items()}
            return node

        statements, result = program
        for name, expr in statements:
            env[name] = evaluate(expr)
        body: dict[str, Any] = {"response": evaluate(result)}
        if errors:
            body["execute_errors"] = errors
        return body


# --- helpers ---------------------------------------------------------------------------------------------


async def _read_params(request: web.Request) -> dict[str, str]:
    params = {key: value for key, value in request.query.items()}
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = value
            elif isinstance(value, bytes | bytearray):
                params[key] = value.decode("utf-8", "replace")
    return params


def _echo(method: str, params: dict[str, str]) -> list[dict[str, str]]:
    echoed = [{"key": "method", "value": method}, {"key": "oauth", "value": "1"}]
    if "v" in params:
        echoed.append({"key": "v", "value": params["v"]})
    echoed.extend({"key": k, "value": v} for k, v in params.items() if k not in ("v", "access_token"))
    return echoed


def _injected(code: int) -> _ApiError:
    extra: dict[str, Any] = {}
    if code == 14:
        sid = str(random.randrange(10**11, 10**12))
        extra = {"captcha_sid": sid, "captcha_img": f"https://api.vk.ru/captcha.php?sid={sid}&s=1"}
    return _ApiError(code, extra=extra)


def _to_int(value: str, name: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise _ApiError(100, f"{_PARAM}: {name} not integer") from None


def _int_param(params: dict[str, str], name: str) -> int:
    return _to_int(params[name], name)


def _item(message: StoredMessage) -> dict[str, int]:
    return {
        "peer_id": message.peer_id,
        "message_id": message.message_id,
        "conversation_message_id": message.conversation_message_id,
    }


def _conversation(chat: _Chat, group_id: int) -> dict[str, Any]:
    reasons = {ChatState.KICKED: 917, ChatState.DISABLED: 945, ChatState.READ_ONLY: 1012}
    reason = reasons.get(chat.state)
    can_write: dict[str, Any] = {"allowed": reason is None}
    if reason is not None:
        can_write["reason"] = reason
    last = chat.messages[-1] if chat.messages else None
    conversation: dict[str, Any] = {
        "peer": {"id": chat.peer_id, "type": "chat", "local_id": chat.chat_id},
        "last_message_id": last.message_id if last else 0,
        "last_conversation_message_id": last.conversation_message_id if last else 0,
        "in_read": last.message_id if last else 0,
        "out_read": last.message_id if last else 0,
        "version": len(chat.messages) + 1,
        "can_write": can_write,
        "chat_settings": {
            "title": chat.title,
            "state": "kicked" if chat.state is ChatState.KICKED else "in",
            "is_disabled": chat.state is ChatState.DISABLED,
            "owner_id": -group_id,
            "members_count": 1,
            "acl": {name: False for name in _ACL},
        },
    }
    item: dict[str, Any] = {"conversation": conversation}
    if last is not None:
        item["last_message"] = {
            "id": last.message_id,
            "conversation_message_id": last.conversation_message_id,
            "peer_id": last.peer_id,
            "from_id": last.from_id,
            "date": last.date,
            "text": last.text,
            "random_id": last.random_id,
            "out": 1,
            "version": last.message_id,
        }
    return item


_ACL = (
    "can_change_info",
    "can_change_invite_link",
    "can_change_pin",
    "can_invite",
    "can_promote_users",
    "can_see_invite_link",
    "can_moderate",
    "can_copy_chat",
    "can_call",
    "can_use_mass_mentions",
)


def _vkscript_str(value: Any) -> str:
    """How VK turns a VKScript value into a method parameter."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_vkscript_str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _calls_in(node: Any) -> Iterator[_Call]:
    if isinstance(node, _Call):
        yield node
        yield from _calls_in(node.args)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _calls_in(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _calls_in(value)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
_PUNCT = "[]{}(),:;.="


class _Parser:
    """Recursive descent over the VKScript subset described in the module docstring."""

    def __init__(self, code: str) -> None:
        self.tokens = list(self._tokenize(code))
        self.pos = 0

    def program(self) -> tuple[list[tuple[str, Any]], Any]:
        statements: list[tuple[str, Any]] = []
        while self._peek() == ("name", "var"):
            self.pos += 1
            name = self._expect("name")
            self._expect("punct", "=")
            statements.append((name, self._expr()))
            self._skip_semicolons()
        if self._peek() != ("name", "return"):
            raise _CompileError("expected return")
        self.pos += 1
        result = self._expr()
        self._skip_semicolons()
        if self.pos != len(self.tokens):
            raise _CompileError(f"unexpected {self.tokens[self.pos][1]!r} after return")
        return statements, result

    def _skip_semicolons(self) -> None:
        while self._peek() == ("punct", ";"):
            self.pos += 1

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> tuple[str, Any]:
        token = self._peek()
        if token is None:
            raise _CompileError("unexpected end of code")
        self.pos += 1
        return token

    def _expect(self, kind: str, value: Any = None) -> Any:
        token = self._next()
        if token[0] != kind or (value is not None and token[1] != value):
            raise _CompileError(f"expected {value or kind}, got {token[1]!r}")
        return token[1]

    def _expr(self) -> Any:
        kind, value = self._next()
        if kind in ("string", "number"):
            return value
        if kind == "punct" and value == "[":
            items: list[Any] = []
            while self._peek() != ("punct", "]"):
                items.append(self._expr())
                if self._peek() == ("punct", ","):
                    self.pos += 1
                elif self._peek() != ("punct", "]"):
                    raise _CompileError("expected , or ]")
            self.pos += 1
            return items
        if kind == "punct" and value == "{":
            obj: dict[str, Any] = {}
            while self._peek() != ("punct", "}"):
                key_kind, key = self._next()
                if key_kind not in ("name", "string"):
                    raise _CompileError(f"bad object key {key!r}")
                self._expect("punct", ":")
                obj[str(key)] = self._expr()
                if self._peek() == ("punct", ","):
                    self.pos += 1
                elif self._peek() != ("punct", "}"):
                    raise _CompileError("expected , or }")
            self.pos += 1
            return obj
        if kind == "name":
            if value in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[value]
            if value == "API":
                parts = []
                while self._peek() == ("punct", "."):
                    self.pos += 1
                    parts.append(self._expect("name"))
                if len(parts) < 2:
                    raise _CompileError("expected API.section.method")
                self._expect("punct", "(")
                args = None if self._peek() == ("punct", ")") else self._expr()
                self._expect("punct", ")")
                return _Call(".".join(parts), args)
            if value in ("var", "return"):
                raise _CompileError(f"unexpected {value}")
            return _Var(value)
        raise _CompileError(f"unexpected {value!r}")

    @staticmethod
    def _tokenize(code: str) -> Iterator[tuple[str, Any]]:
        i, n = 0, len(code)
        while i < n:
            ch = code[i]
            if ch.isspace():
                i += 1
            elif code.startswith("//", i):
                end = code.find("\n", i)
                i = n if end < 0 else end + 1
            elif code.startswith("/*", i):
                end = code.find("*/", i + 2)
                if end < 0:
                    raise _CompileError("unterminated comment")
                i = end + 2
            elif ch in _PUNCT:
                yield "punct", ch
                i += 1
            elif ch in "\"'":
                i, text = _read_string(code, i)
                yield "string", text
            elif ch.isdigit() or (ch == "-" and i + 1 < n and code[i + 1].isdigit()):
                j = i + 1
                while j < n and (code[j].isdigit() or code[j] in ".eE+-"):
                    j += 1
                literal = code[i:j]
                try:
                    number: int | float = float(literal) if any(c in literal for c in ".eE") else int(literal)
                except ValueError:
                    raise _CompileError(f"bad number {literal!r}") from None
                yield "number", number
                i = j
            elif ch.isalpha() or ch in "_$":
                j = i + 1
                while j < n and (code[j].isalnum() or code[j] in "_$"):
                    j += 1
                yield "name", code[i:j]
                i = j
            else:
                raise _CompileError(f"unexpected character {ch!r}")


def _read_string(code: str, start: int) -> tuple[int, str]:
    quote, i = code[start], start + 1
    out: list[str] = []
    while i < len(code):
        ch = code[i]
        if ch == quote:
            return i + 1, _fix_surrogates("".join(out))
        if ch == "\\":
            if i + 1 >= len(code):
                break
            esc = code[i + 1]
            if esc == "u":
                digits = code[i + 2 : i + 6]
                if len(digits) != 4:
                    raise _CompileError("bad \\u escape")
                try:
                    out.append(chr(int(digits, 16)))
                except ValueError:
                    raise _CompileError("bad \\u escape") from None
                i += 6
                continue
            out.append(_ESCAPES.get(esc, esc))
            i += 2
            continue
        if ch == "\n":
            raise _CompileError("newline in string")
        out.append(ch)
        i += 1
    raise _CompileError("unterminated string")


def _fix_surrogates(text: str) -> str:
    """Join UTF-16 surrogate pairs produced by \\u escapes (JSON encoders escape astral characters so)."""
    try:
        return text.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise _CompileError("lone surrogate in string") from None


# --- standalone ------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    emulator = VkEmulator(host=args.host, port=args.port, rate_limit=args.rps)
    for spec in args.community:
        token, _, group = spec.rpartition(":")
        emulator.add_community(token, int(group))
    for spec in args.chat:
        chat_id, _, rest = spec.partition(":")
        title, _, state = rest.partition(":")
        emulator.add_chat(int(chat_id), title or f"Чат {chat_id}", state or ChatState.ACTIVE)
    async with emulator:
        print(f"VK emulator on {emulator.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="VK API emulator (messages.send, execute, getConversations)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--rps", type=int, default=20, help="per-token rate limit")
    parser.add_argument("--community", action="append", default=[], metavar="TOKEN:GROUP_ID")
    parser.add_argument("--chat", action="append", default=[], metavar="CHAT_ID:TITLE[:STATE]")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
