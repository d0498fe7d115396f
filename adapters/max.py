"""MAX messenger channel: post an announcement into a MAX group chat or channel through the Bot API.

Wire protocol (`reference/protocols.md` §2): `POST {base_url}/messages?chat_id=…&disable_link_preview=true` with
the raw token in the `Authorization` header and `{"text", "format": "html", "notify"}` as JSON. The host is
`https://platform-api2.max.ru`, whose certificate chains to the Russian Trusted Root CA (Минцифры): the adapter
trusts the system/certifi store plus `adapters/certs/russian_trusted_root_ca.pem`.

Rendering. The text is `Message.plain_text()` as HTML: the head ("kind label: title") bold, the body, the footer
(school · reference) in italics; `&`, `<` and `>` of user text are escaped. A text longer than MAX's 4000
characters is split with `split_text`; every part carries the footer, and each *rendered* part (tags and
entities included, counted in UTF-16 units like the server) is at most 4000.

No duplicates. MAX has no idempotency key (§2.11), so each part ends with a short reconciliation marker in its
footer: `#` and 8 hex digits of SHA-256 over the delivery key, the part number and the number of parts, e.g.
`Школа № 7 · Объявление 12 · 2/3 · #5f0c9a1e`. It reads like a reference code, survives the HTML rendering, and
is what `find_sent` looks for in the chat's messages (`GET /messages?chat_id=…`, page by page back to the first
attempt). After an
unknown outcome the dispatcher calls `find_sent`: it returns the earlier send when every part is in the chat,
None when none is, and when only the first parts are there it sends only the rest, in order, and returns the
whole. `send` itself never resends a part the server accepted: once one part is in, a later failure is
`UnknownOutcome` (or the permanent error, when nothing can be sent any more).

Errors (§2.5): 429 → `RateLimited` (and the token's bucket is paused); 503, and connection failures before the
request left → `TransientError`; a timeout or a cut connection after it left, and 500/502/504 answers to a send
(the server may have stored it) → `UnknownOutcome`; `chat.not.found` / `chat.denied`, and 403 `access.denied` to a
request about one chat (the bot lacks a right in that chat) → `DeadTarget`; 401 `verify.token`, 403
`deprecated.token`, `access.denied` to any other request, an untrusted TLS certificate → `CredentialError`; any
other 4xx → `PermanentError`. Only provably safe retries happen inside a call, bounded by `attempts`: a refused
connection before sending, a 429 after the pause, and any failure of a read. Tokens never appear in logs or in
error texts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import html
import importlib
import importlib.util
import json
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from adapters.base import (
    AdapterError,
    Channel,
    CredentialError,
    DeadTarget,
    Message,
    PermanentError,
    RateLimited,
    Sent,
    TargetHealth,
    TransientError,
    UnknownOutcome,
    before_request,
)
from adapters.ratelimit import RateLimiters
from adapters.text import split_text

__all__ = [
    "CA_BUNDLE",
    "DEFAULT_BASE_URL",
    "WEBHOOK_SECRET_HEADER",
    "ChatHealth",
    "MaxChannel",
    "part_marker",
    "render_parts",
    "trust_context",
]

DEFAULT_BASE_URL = "https://platform-api2.max.ru"
CA_BUNDLE = Path(__file__).with_name("certs") / "russian_trusted_root_ca.pem"
WEBHOOK_SECRET_HEADER = "X-Max-Bot-Api-Secret"  # noqa: S105 - a header name
MAX_TEXT = 4000
RECONCILE_PAGES = 50  # pages of the chat read back to the first attempt at most (5,000 messages)
RECONCILE_SLACK = timedelta(minutes=10)  # our clock and MAX's may differ this much
DEFAULT_RATE = 28.0  # MAX allows 30 rps per token: ~7% headroom (bench/max_fanout.py: 1.10x the floor, no 429)
DEFAULT_BURST = 1  # no burst: requests bunch on the wire anyway, and rate + burst must stay under 30
DEFAULT_UPDATE_TYPES = ("bot_added", "bot_removed", "bot_started")

_SECRET = re.compile(r"^[a-zA-Z0-9_-]{5,256}$")
_WRITE_RIGHTS = {"write", "post_edit_delete_message"}
_DEAD_CODES = {"chat.not.found", "chat.denied"}

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------------
# rendering


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def part_marker(key: str, index: int, total: int) -> str:
    """The reconciliation marker of part `index` (0-based) of `total`: `#` and 8 hex digits."""
    digest = hashlib.sha256(f"{key}\x00{index + 1}/{total}".encode()).hexdigest()
    return "#" + digest[:8]


def render_parts(message: Message, limit: int = MAX_TEXT) -> list[str]:
    """The HTML texts to post for `message`, in order; each is at most `limit` UTF-16 units long."""
    # head and footer exactly as Message.plain_text() words them
    head = dataclasses.replace(message, text="", school="", reference="").plain_text()
    body = message.text.strip()
    base = dataclasses.replace(message, kind_label="", title="", text="").plain_text()

    def footer(index: int, total: int) -> str:
        counter = [f"{index + 1}/{total}"] if total > 1 else []
        text = " · ".join([*([base] if base else []), *counter, part_marker(message.key, index, total)])
        return f"<i>{html.escape(text, quote=False)}</i>"

    chunk_limit = limit - _utf16_len(footer(998, 999)) - 2
    if chunk_limit < 100:
        raise ValueError("the school name and reference leave no room for the text")
    while True:
        chunks = _chunks(head, body, chunk_limit)
        total = len(chunks)
        parts = []
        for index, chunk in enumerate(chunks):
            rendered = _render_chunk(chunk, head if index == 0 else "")
            parts.append(f"{rendered}\n\n{footer(index, total)}" if rendered else footer(index, total))
        longest = max(_utf16_len(part) for part in parts)
        if longest <= limit:
            return parts
        # escaping (&amp;), tags and astral characters made a part too long: cut smaller and try again
        chunk_limit = min(chunk_limit - 1, chunk_limit * limit // longest)
        if chunk_limit < 1:  # pragma: no cover - cannot happen with limit ≥ 100 + footer
            raise ValueError("cannot split the text into parts that fit")


def _chunks(head: str, body: str, limit: int) -> list[str]:
    """The plain-text parts (split_text keeps the head with the start of the body)."""
    return split_text("\n\n".join(part for part in (head, body) if part), limit) or [""]


def _render_chunk(chunk: str, head: str) -> str:
    if head and chunk.startswith(head):
        return f"<b>{html.escape(head, quote=False)}</b>{html.escape(chunk[len(head) :], quote=False)}"
    if head and head.startswith(chunk):  # a head longer than a whole part
        return f"<b>{html.escape(chunk, quote=False)}</b>"
    return html.escape(chunk, quote=False)


# --------------------------------------------------------------------------------------------------------------
# health


@dataclass(frozen=True, slots=True)
class ChatHealth:
    """Whether the bot can post into a chat, and what to do if not (`explanation`, in Russian, for the IT admin).

    `status` is MAX's chat status for the bot (`active`, `removed`, `left`, `closed`) or `not_found`.
    """

    ok: bool
    is_admin: bool
    can_write: bool
    status: str
    title: str
    explanation: str


# --------------------------------------------------------------------------------------------------------------
# the channel


class _Retry(Exception):
    """An attempt failed in a way that is safe to repeat at once; carries the error to raise if it was the last."""

    def __init__(self, error: AdapterError, *, pause: float = 0.0) -> None:
        super().__init__(error.code)
        self.error = error
        self.pause = pause


class MaxChannel(Channel):
    """Posts into MAX group chats and channels; `Message.target` is the chat_id, `Message.account` names the bot."""

    name = "max"

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        base_url: str = DEFAULT_BASE_URL,
        ca_bundle: str | Path | None = CA_BUNDLE,
        limiters: RateLimiters | None = None,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        attempts: int = 3,
        rate_limit_pause: float = 1.0,
        reconcile_after: float = 5.0,
        reconcile_window: int = 100,
        notify: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """`accounts` maps account names to bot tokens. `rate`/`burst` configure the per-token bucket in
        `limiters` (shared with every other user of the token). `timeout` bounds one HTTP request;
        `attempts` bounds the in-call retries; `rate_limit_pause` is how long a 429 stops the token (MAX sends
        no Retry-After); `reconcile_after` is the pause suggested with `UnknownOutcome` before `find_sent`;
        `reconcile_window` how many recent chat messages `find_sent` reads (at most 100)."""
        if attempts < 1 or not 1 <= reconcile_window <= 100:
            raise ValueError("attempts must be ≥ 1 and reconcile_window within 1..100")
        self._accounts = dict(accounts)
        self._base_url = base_url.rstrip("/")
        self._limiters = limiters or RateLimiters()
        self._rate = rate
        self._burst = burst
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._attempts = attempts
        self._rate_limit_pause = rate_limit_pause
        self._reconcile_after = reconcile_after
        self._reconcile_window = reconcile_window
        self._notify = notify
        self._ssl: ssl.SSLContext | bool = True
        if self._base_url.startswith("https://"):
            self._ssl = trust_context(ca_bundle)
        self._session = session
        self._own_session = session is None
        self._session_lock = asyncio.Lock()

    # ----------------------------------------------------------------------------------------------------------
    # Channel

    async def send(self, message: Message) -> Sent:
        chat_id = _chat_id(message.target)
        parts = render_parts(message)
        return await self._send_parts(message, chat_id, parts, found=[])

    async def find_sent(self, message: Message) -> Sent | None:
        """Reconcile after an unknown outcome: the send if the chat has every part, None if it has none.

        The chat is read newest first, a page of `reconcile_window` messages at a time, back to `message.since`
        (less `RECONCILE_SLACK` for the clocks' difference): however much the parents wrote after the first
        attempt, its marker is found. A chat with more than `RECONCILE_PAGES` pages since then cannot be read to
        the end, and the outcome stays unknown. When only the first parts are in the chat, the missing ones are
        sent now (in order) and the whole is returned. A failure that leaves the outcome open raises
        `UnknownOutcome` again (call once more later); a dead chat or a bad token raise their permanent errors.
        """
        chat_id = _chat_id(message.target)
        parts = render_parts(message)
        markers = [part_marker(message.key, index, len(parts)) for index in range(len(parts))]
        since = None if message.since is None else int((message.since - RECONCILE_SLACK).timestamp() * 1000)
        params = {"chat_id": str(chat_id), "count": str(self._reconcile_window)}
        found: dict[int, str] = {}
        seen: set[str] = set()
        for _ in range(RECONCILE_PAGES):
            page = await self._chat_page(message.account, chat_id, params)
            fresh = [(mid, item) for mid, item in page if mid not in seen]
            seen.update(mid for mid, _ in fresh)
            for mid, item in fresh:
                sender = item.get("sender")
                if isinstance(sender, dict) and not sender.get("is_bot", False):
                    continue  # a person quoting our footer is not our post
                text = str(item["body"].get("text") or "").rstrip()
                for index, marker in enumerate(markers):
                    if text.endswith(marker):
                        found[index] = mid  # newest first: the oldest copy wins
            stamps = [item.get("timestamp") for _, item in page]
            oldest = min((t for t in stamps if isinstance(t, int)), default=None)
            if len(page) < self._reconcile_window or since is None or oldest is None or oldest < since:
                break
            # the next page ends where this one did (inclusive: messages of the same millisecond are not skipped,
            # unless a whole page shares it)
            params = {**params, "from": str(oldest if fresh else oldest - 1), "to": str(since)}
        else:
            raise UnknownOutcome(
                f"В чате {chat_id} после первой попытки больше {RECONCILE_PAGES * self._reconcile_window} "
                "сообщений: проверить, дошло ли наше, не удалось.",
                code="max:reconcile-depth",
                retry_after=self._reconcile_after,
            )
        if not found:
            return None
        mids = [found[index] for index in sorted(found)]
        last = max(found)
        if last == len(parts) - 1:
            return Sent(",".join(mids), parts=len(parts))
        log.warning("max: chat %s has parts 1..%d of %d of a delivery; sending the rest", chat_id, last + 1, len(parts))
        return await self._send_parts(message, chat_id, parts, found=mids, start=last + 1)

    async def _chat_page(self, account: str, chat_id: int, params: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
        """One page of the chat's messages, newest first, as (mid, message); a failure leaves the outcome open."""
        try:
            data = await self._call(account, "GET", "/messages", params=params, chat_id=chat_id)
        except TransientError as exc:
            if isinstance(exc, UnknownOutcome):
                raise
            raise UnknownOutcome(
                f"Не удалось проверить чат {chat_id} после неясного исхода отправки: {exc}",
                code=exc.code,
                retry_after=exc.retry_after or self._reconcile_after,
            ) from exc
        page = []
        for item in _list(data.get("messages")):
            body = item.get("body")
            if isinstance(body, dict) and isinstance(body.get("mid"), str):
                page.append((body["mid"], item))
        return page

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    # ----------------------------------------------------------------------------------------------------------
    # chat health and webhook

    async def check_chat(self, account: str, chat_id: int | str) -> ChatHealth:
        """Can the account's bot post into the chat? Raises only for a bad token or an unreachable API."""
        cid = _chat_id(str(chat_id))
        try:
            member = await self._call(account, "GET", f"/chats/{cid}/members/me", chat_id=cid)
        except CredentialError:
            raise
        except PermanentError:  # 403 chat.denied / 404 chat.not.found: the bot is not (any more) in the chat
            return await self._absent(account, cid)
        chat = await self._call(account, "GET", f"/chats/{cid}", chat_id=cid)
        title = str(chat.get("title") or cid)
        status = str(chat.get("status") or "active")
        is_admin = bool(member.get("is_admin"))
        rights = set(_list_of_str(member.get("permissions")))
        channel = chat.get("type") == "channel"
        can_write = status == "active" and is_admin and (not channel or bool(rights & _WRITE_RIGHTS))
        if can_write:
            text = f"Бот подключён к чату «{title}» и может публиковать объявления."
        elif status != "active":
            text = _STATUS_TEXT.get(status, _STATUS_TEXT["removed"]).format(title=title)
        elif not is_admin:
            text = (
                f"Бот состоит в чате «{title}», но не является администратором, а писать в групповой чат MAX "
                "разрешает только администраторам. Назначьте бота администратором чата."
            )
        else:
            text = (
                f"Бот — администратор канала «{title}», но без права публиковать посты. "
                "Включите боту право «Писать посты» в настройках канала."
            )
        return ChatHealth(
            ok=can_write, is_admin=is_admin, can_write=can_write, status=status, title=title, explanation=text
        )

    async def check(self, account: str, target: str) -> TargetHealth:
        health = await self.check_chat(account, target)
        return TargetHealth(ok=health.ok, explanation=health.explanation, title=health.title)

    async def register_webhook(
        self, account: str, url: str, secret: str, update_types: Sequence[str] = DEFAULT_UPDATE_TYPES
    ) -> None:
        """Subscribe the account's bot to updates (`bot_added`/`bot_removed`/… by default) at `url`.

        MAX will POST `Update` JSON there with `X-Max-Bot-Api-Secret: <secret>`; the production API accepts only
        https on port 443 with a trusted certificate. The secret is 5–256 characters of A–Z, a–z, 0–9, `_`, `-`.
        """
        if not _SECRET.match(secret):
            raise ValueError("webhook secret must be 5..256 characters of A-Z, a-z, 0-9, '_' and '-'")
        body = {"url": url, "update_types": list(update_types), "secret": secret}
        data = await self._call(account, "POST", "/subscriptions", json_body=body)
        if data.get("success") is False:
            reason = self._safe(str(data.get("message") or ""))
            raise PermanentError(f"MAX не принял подписку на события бота: {reason}", code="max:subscription")

    # ----------------------------------------------------------------------------------------------------------
    # internals

    async def _absent(self, account: str, chat_id: int) -> ChatHealth:
        status, title = "not_found", str(chat_id)
        try:
            chat = await self._call(account, "GET", f"/chats/{chat_id}", chat_id=chat_id)
        except CredentialError:
            raise
        except PermanentError:
            pass
        else:
            status = str(chat.get("status") or "removed")
            title = str(chat.get("title") or chat_id)
            if status == "active":  # listed, but the membership is gone
                status = "removed"
        text = _STATUS_TEXT.get(status, _STATUS_TEXT["removed"]).format(title=title)
        return ChatHealth(ok=False, is_admin=False, can_write=False, status=status, title=title, explanation=text)

    async def _send_parts(
        self, message: Message, chat_id: int, parts: Sequence[str], *, found: Sequence[str], start: int = 0
    ) -> Sent:
        mids = list(found)
        for index in range(start, len(parts)):
            body = {"text": parts[index], "format": "html", "notify": self._notify}
            try:
                data = await self._call(
                    message.account,
                    "POST",
                    "/messages",
                    params={"chat_id": str(chat_id), "disable_link_preview": "true"},
                    json_body=body,
                    chat_id=chat_id,
                    sending=message,
                )
            except TransientError as exc:
                if not mids:  # nothing of this delivery is in the chat: the error speaks for itself
                    raise
                raise UnknownOutcome(
                    f"В чат {chat_id} доставлено {len(mids)} из {len(parts)} частей, затем: {exc}. "
                    "Перед повтором проверим чат, чтобы не отправить части дважды.",
                    code=exc.code,
                    retry_after=exc.retry_after or self._reconcile_after,
                ) from exc
            mids.append(_mid(data))
            log.debug("max: chat %s accepted part %d/%d", chat_id, index + 1, len(parts))
        return Sent(",".join(mids), parts=len(parts))

    async def _call(
        self,
        account: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
        chat_id: int | None = None,
        sending: Message | None = None,
    ) -> dict[str, Any]:
        """One API call with the bounded in-call retries; returns the JSON object of a 2xx answer. `sending`: the
        message a POST delivers, fenced (`before_request`) after the rate permit and before every try."""
        token = self._accounts.get(account)
        if not token:
            raise CredentialError(f"Для учётной записи MAX «{account}» не задан токен бота.", code="max:no-token")
        bucket = self._limiters.for_token(token, self._rate, self._burst)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=_wait,
            retry=retry_if_exception_type(_Retry),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await bucket.acquire()
                    if sending is not None:
                        await before_request(sending)
                    try:
                        return await self._once(
                            token, account, method, path, params, json_body, chat_id, sending is not None
                        )
                    except _Retry as retry:
                        if isinstance(retry.error, RateLimited):
                            bucket.penalize(retry.pause)
                        log.info("max: %s %s for %s: %s, retrying", method, path, account, retry.error.code)
                        raise
        except _Retry as retry:
            log.warning("max: %s %s for %s failed: %s", method, path, account, retry.error.code)
            raise retry.error from retry.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        token: str,
        account: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
        chat_id: int | None,
        sending: bool,
    ) -> dict[str, Any]:
        session = await self._get_session()
        try:
            async with session.request(
                method,
                self._base_url + path,
                params=params,
                data=None if json_body is None else json.dumps(json_body, ensure_ascii=False).encode(),
                headers=_headers(token, json_body is not None),
                timeout=self._timeout,
                ssl=self._ssl,
            ) as response:
                status = response.status
                raw = await response.read()
        except aiohttp.ClientConnectorCertificateError as exc:
            raise CredentialError(
                "Не удалось проверить TLS-сертификат MAX. Серверу MAX нужен корневой сертификат Минцифры "
                "(Russian Trusted Root CA): проверьте, что он установлен вместе со Звонком.",
                code="max:tls",
            ) from None if _leaks(exc, token) else exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # the connection was never made: nothing was sent
            refused = TransientError("Не удалось подключиться к серверу MAX.", code="max:connect")
            raise _Retry(refused) from None if _leaks(exc, token) else exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            cause = None if _leaks(exc, token) else exc
            if sending:
                raise UnknownOutcome(
                    f"MAX не ответил на отправку в чат {chat_id} ({type(exc).__name__}): сообщение могло "
                    "дойти. Перед повтором проверим чат.",
                    code="max:no-response",
                    retry_after=self._reconcile_after,
                ) from cause
            silent = TransientError(f"MAX не ответил ({type(exc).__name__}).", code="max:no-response")
            raise _Retry(silent) from cause
        data = _json_object(raw)
        if 200 <= status < 300:
            if data is None:
                if sending:
                    raise UnknownOutcome(
                        f"MAX ответил на отправку в чат {chat_id} без данных: сообщение могло дойти.",
                        code="max:bad-response",
                        retry_after=self._reconcile_after,
                    )
                raise _Retry(TransientError("MAX прислал непонятный ответ.", code="max:bad-response"))
            if sending and not _has_mid(data):
                raise UnknownOutcome(
                    f"MAX ответил на отправку в чат {chat_id} без идентификатора сообщения.",
                    code="max:bad-response",
                    retry_after=self._reconcile_after,
                )
            return data
        error = self._error(status, data, account=account, chat_id=chat_id, sending=sending)
        if isinstance(error, RateLimited):
            raise _Retry(error, pause=error.retry_after or self._rate_limit_pause)
        if not sending and type(error) is TransientError:
            raise _Retry(error)  # reads are idempotent: retry 5xx at once (bounded)
        raise error

    def _error(
        self, status: int, data: dict[str, Any] | None, *, account: str, chat_id: int | None, sending: bool
    ) -> AdapterError:
        """The adapter error for a non-2xx answer (§2.5)."""
        code = str(data.get("code") or "") if data else ""
        detail = self._safe(str(data.get("message") or "")) if data else ""
        tag = f"max:{code}" if code else f"max:http-{status}"
        said = f"HTTP {status}" + (f", {code}" if code else "") + (f": {detail}" if detail else "")
        where = f"чат {chat_id}" if chat_id is not None else "запрос"
        if status == 429 or code == "too.many.requests":
            return RateLimited(
                f"MAX ограничил частоту запросов бота ({said}); повторим позже.",
                code=tag,
                retry_after=self._rate_limit_pause,
            )
        if code == "access.denied" and chat_id is not None:  # this chat's permission, not the whole bot's token
            return DeadTarget(
                f"у бота нет прав писать в {where} ({said}): назначьте бота администратором чата с правом писать",
                code=tag,
            )
        if status == 401 or code in ("verify.token", "deprecated.token", "access.denied"):
            if code == "deprecated.token":
                text = f"MAX отверг способ передачи токена ({said}): обновите Звонок."
            elif code == "access.denied":
                text = f"У бота учётной записи «{account}» нет прав на это действие в MAX ({said})."
            else:
                text = (
                    f"Токен бота MAX учётной записи «{account}» недействителен или отозван ({said}). "
                    "Получите новый токен на business.max.ru и обновите настройки."
                )
            return CredentialError(text, code=tag)
        if code in _DEAD_CODES:
            if code == "chat.not.found":
                text = f"MAX: {where} не найден или бот в нём не состоит ({said})."
            else:
                text = (
                    f"MAX не даёт боту писать в {where}: бота удалили из чата, лишили прав администратора "
                    f"или чат закрыт ({said})."
                )
            return DeadTarget(text, code=tag)
        if code == "attachment.not.ready":
            return TransientError(f"MAX ещё обрабатывает вложение ({said}).", code=tag, retry_after=1.0)
        if status >= 500:
            if sending and status != 503:
                # the backend may have stored the message before failing: reconcile before any resend
                return UnknownOutcome(
                    f"Сервер MAX ответил ошибкой на отправку в {where} ({said}): сообщение могло дойти. "
                    "Перед повтором проверим чат.",
                    code=tag,
                    retry_after=self._reconcile_after,
                )
            return TransientError(f"Сервер MAX временно недоступен ({said}).", code=tag)
        return PermanentError(f"MAX отклонил запрос в {where} ({said}).", code=tag)

    def _safe(self, text: str) -> str:
        """Server-provided text, shortened and with every known token masked."""
        for token in self._accounts.values():
            if token:
                text = text.replace(token, "***")
        return text[:300]

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            async with self._session_lock:
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession(timeout=self._timeout)
                    self._own_session = True
        return self._session


_STATUS_TEXT = {
    "removed": (
        "Бота удалили из чата «{title}»: объявления туда не доставляются. Добавьте бота в чат снова "
        "и назначьте администратором."
    ),
    "left": "Бот вышел из чата «{title}». Добавьте бота в чат снова и назначьте администратором.",
    "closed": "Чат «{title}» закрыт: публиковать в нём нельзя. Подключите вместо него действующий чат.",
    "not_found": (
        "Чат {title} не найден в MAX или бот в него не добавлен. Проверьте идентификатор чата, добавьте бота "
        "в чат и назначьте администратором."
    ),
}


def trust_context(ca_bundle: str | Path | None = CA_BUNDLE) -> ssl.SSLContext:
    """TLS trust for MAX: the system store, certifi's when installed, and the Russian Trusted Root CA bundle."""
    context = ssl.create_default_context()
    if importlib.util.find_spec("certifi") is not None:
        where = importlib.import_module("certifi").where
        context.load_verify_locations(cafile=str(where()))
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def _wait(state: RetryCallState) -> float:
    """Pause between in-call attempts: a 429 already paused the bucket; a refused connection backs off a little."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Retry) and isinstance(exc.error, RateLimited):
        return 0.0
    return float(min(0.1 * 2 ** (state.attempt_number - 1), 2.0))


def _headers(token: str, has_body: bool) -> dict[str, str]:
    headers = {"Authorization": token}  # the raw token, no "Bearer" (§2.2)
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


def _leaks(exc: BaseException, token: str) -> bool:
    return token in str(exc) or token in repr(exc)


def _chat_id(target: str) -> int:
    try:
        return int(str(target).strip())
    except ValueError:
        raise PermanentError(
            f"Неверный идентификатор чата MAX: «{target}» (нужно число, например -72000000000123).",
            code="max:bad-target",
        ) from None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _has_mid(data: dict[str, Any]) -> bool:
    message = data.get("message")
    body = message.get("body") if isinstance(message, dict) else None
    return isinstance(body, dict) and isinstance(body.get("mid"), str)


def _mid(data: dict[str, Any]) -> str:
    return str(data["message"]["body"]["mid"])


def _list(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _list_of_str(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
