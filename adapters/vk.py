"""VK community messages: `messages.send` to chat peers, batched through `execute` (protocols.md §1).

Every part of a message carries a deterministic non-zero `random_id` derived from the delivery key and the
part index, and VK drops a repeated (community, random_id) for good, so a resend after any failure (timeout,
dropped connection, 5xx) never posts twice. That is why `find_sent` keeps the default: an unknown outcome is
resolved by simply sending again.

Error policy (§1.7): 1/10 and HTTP 5xx or connection failures are retried here a few times with backoff, then
raised as `TransientError`; 6 → `RateLimited` after holding the token's bucket; 9 → `TransientError` after
minutes; 29 → after hours; 5/7/14/15 → `CredentialError`; 917/925/927/945/1012 → `DeadTarget`; everything else
→ `PermanentError`. A timeout or a connection lost after the request left → `UnknownOutcome`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.base import (
    AdapterError,
    Channel,
    CredentialError,
    DeadTarget,
    Message,
    Outcome,
    PermanentError,
    RateLimited,
    Sent,
    TransientError,
    UnknownOutcome,
)
from adapters.ratelimit import RateLimiters
from adapters.text import split_text, utf16_length

__all__ = ["VkChannel", "random_id"]

log = logging.getLogger(__name__)

API_VERSION = "5.199"
TEXT_LIMIT = 4096  # UTF-16 code units, as VK counts (protocols.md §1.9)
EXECUTE_LIMIT = 25
FLOOD_PAUSE = 15 * 60.0  # error 9: minutes
QUOTA_PAUSE = 4 * 3600.0  # error 29: the daily quota, hours
TRANSIENT_PAUSE = 30.0  # 1/10/5xx after the in-adapter retries

_RETRYABLE = frozenset({1, 10})
_CREDENTIAL = frozenset({5, 7, 14, 15})
_DEAD = frozenset({917, 925, 927, 945, 1012})

_TEXTS: dict[int, str] = {
    1: "VK: неизвестная ошибка сервера",
    5: "VK не принимает ключ доступа сообщества (учётная запись «{account}»): нужен новый ключ",
    6: "VK: слишком много запросов в секунду",
    7: "VK: у сообщества (учётная запись «{account}») нет права отправлять сообщения",
    8: "VK: неверный запрос",
    9: "VK: сработал контроль флуда, повторим через несколько минут",
    10: "VK: внутренняя ошибка сервера",
    13: "VK: ошибка выполнения пакетного запроса",
    14: "VK требует капчу для сообщества (учётная запись «{account}»): нужен администратор",
    15: "VK: доступ запрещён (учётная запись «{account}»)",
    29: "VK: исчерпан суточный лимит запросов, повторим через несколько часов",
    100: "VK: неверные параметры запроса",
    914: "VK: сообщение слишком длинное",
    917: "Бот сообщества не состоит в чате {target} (удалён из чата)",
    925: "Сообщество не администратор чата {target}",
    927: "Чат {target} не существует",
    945: "Чат {target} отключён",
    1012: "В чате {target} писать запрещено (чат только для чтения)",
}


def random_id(key: str, part: int) -> int:
    """The dedup handle of part `part` of delivery `key`: a positive 63-bit integer, never 0.

    VK checks a random_id against the sender's whole message history and asks for a large range: "Заданный
    random_id используется для проверки уникальности за всю историю сообщений, поэтому используйте большой
    диапазон (до int64)" (the messages.send method page, vk.com/dev/messages.send). The generated JSON schema
    types it int32, which the method page contradicts; 63 bits keep the chance that two of a community's ten
    million messages share one below 1e-5, where 31 bits would make it a certainty."""
    digest = hashlib.sha256(f"zvonok/vk/{key}/{part}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1) or 1


@dataclass(slots=True)
class _Part:
    """One messages.send call of a batch: part `part` of message number `index`."""

    index: int
    part: int
    peer: int
    params: dict[str, str]
    tries: int = 0


class _VkError(Exception):
    """An API error answer, before it is mapped to an `AdapterError` with its target."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(code)
        self.code = code
        self.msg = msg


class VkChannel(Channel):
    """Sends messages to VK chats with community tokens.

    `accounts` maps an account name (`Message.account`) to its community token. `rate` is requests per second
    per token, shared through `limiters` with every other user of the token. `timeout` bounds one request.
    """

    name = "vk"

    def __init__(
        self,
        accounts: Mapping[str, str],
        *,
        base_url: str = "https://api.vk.ru",
        version: str = API_VERSION,
        limiters: RateLimiters | None = None,
        rate: float = 18.0,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        text_limit: int = TEXT_LIMIT,
        batch_size: int = EXECUTE_LIMIT,
        concurrency: int = 4,
        attempts: int = 3,
        backoff: float = 0.5,
        rate_penalty: float = 0.5,
    ) -> None:
        if not 1 <= batch_size <= EXECUTE_LIMIT:
            raise ValueError(f"batch_size must be within 1..{EXECUTE_LIMIT}")
        if rate_penalty < 1 / rate:
            raise ValueError("rate_penalty must be at least 1/rate seconds")
        self._accounts = dict(accounts)
        self._url = base_url.rstrip("/") + "/method/"
        self._version = version
        self._limiters = limiters or RateLimiters()
        self._rate = rate
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session = session
        self._owns_session = session is None
        self._text_limit = text_limit
        self._batch_size = batch_size
        self._concurrency = max(1, concurrency)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._rate_penalty = rate_penalty
        self._chat_locks: dict[tuple[str, int], tuple[asyncio.Lock, list[int]]] = {}

    # --- Channel -------------------------------------------------------------------------------------

    async def send(self, message: Message) -> Sent:
        """Send the message's parts in order; concurrent sends to one chat take turns, so parts of different
        messages do not interleave."""
        token = self._token(message.account)
        parts = self._parts(message, 0)
        key = (message.account, parts[0].peer)
        lock, users = self._chat_locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                ids: list[str] = []
                for part in parts:
                    try:
                        result = await self._call(message.account, token, "messages.send", part.params)
                    except _VkError as error:
                        raise self._error(error, message.account, message.target) from None
                    ids.append(_message_id(result, message.target))
                return Sent(",".join(ids), parts=len(parts))
        finally:
            users[0] -= 1
            if not users[0]:
                del self._chat_locks[key]

    async def send_many(self, messages: Sequence[Message]) -> list[Outcome]:
        """Send through `execute`, up to 25 messages.send per request (one rate-limit token each).

        Parts of one message, and messages to one chat, go out in order: a chat has at most one call in
        flight, and the next part leaves only after the previous one is confirmed. A failure ends only its
        message.
        """
        outcomes: list[Outcome | None] = [None] * len(messages)
        by_account: dict[str, list[_Part]] = {}
        for index, message in enumerate(messages):
            try:
                self._token(message.account)
                by_account.setdefault(message.account, []).extend(self._parts(message, index))
            except AdapterError as error:
                outcomes[index] = error
        await asyncio.gather(
            *(self._send_account(account, parts, messages, outcomes) for account, parts in by_account.items())
        )
        return [o if o is not None else UnknownOutcome("VK: нет результата", code="vk:none") for o in outcomes]

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    # --- batching ------------------------------------------------------------------------------------

    async def _send_account(
        self,
        account: str,
        parts: list[_Part],
        messages: Sequence[Message],
        outcomes: list[Outcome | None],
    ) -> None:
        token = self._accounts[account]
        queues: dict[int, deque[_Part]] = {}
        for part in parts:
            queues.setdefault(part.peer, deque()).append(part)
        counts = {part.index: part.part + 1 for part in parts}
        ids: dict[int, list[str]] = {}
        gate = asyncio.Semaphore(self._concurrency)

        async def run(batch: list[_Part]) -> list[tuple[str | AdapterError, bool]]:
            async with gate:
                return await self._run_batch(account, token, batch, messages)

        while queues:
            wave = [queue[0] for queue in queues.values()]
            batches = [wave[i : i + self._batch_size] for i in range(0, len(wave), self._batch_size)]
            results = await asyncio.gather(*(run(batch) for batch in batches))
            retrying = False
            for batch, batch_results in zip(batches, results, strict=True):
                for part, (result, again) in zip(batch, batch_results, strict=True):
                    queue = queues[part.peer]
                    if isinstance(result, str):
                        queue.popleft()
                        ids.setdefault(part.index, []).append(result)
                        if part.part + 1 == counts[part.index]:
                            outcomes[part.index] = Sent(",".join(ids[part.index]), parts=counts[part.index])
                    elif again and part.tries + 1 < self._attempts:
                        part.tries += 1
                        retrying = True
                    else:
                        outcomes[part.index] = result
                        queues[part.peer] = deque(p for p in queue if p.index != part.index)
            queues = {peer: queue for peer, queue in queues.items() if queue}
            if retrying:
                await asyncio.sleep(self._backoff)

    async def _run_batch(
        self, account: str, token: str, batch: list[_Part], messages: Sequence[Message]
    ) -> list[tuple[str | AdapterError, bool]]:
        """One request for the batch: each part's message id or error, and whether to retry it here
        (an inner 1/10 of an execute; top-level failures were already retried by `_call`)."""
        if len(batch) == 1:
            part = batch[0]
            target = messages[part.index].target
            try:
                left = self._attempts - part.tries  # a part retried after an inner 1/10 keeps its budget
                result = await self._call(account, token, "messages.send", part.params, attempts=left)
                return [(_message_id(result, target), False)]
            except _VkError as error:
                return [(self._error(error, account, target), False)]
            except AdapterError as error:
                return [(error, False)]
        code = "return [" + ",".join(_script_call(part.params) for part in batch) + "];"
        try:
            body = await self._call(account, token, "execute", {"code": code}, whole=True)
            response = body.get("response")
            if not isinstance(response, list) or len(response) != len(batch):
                raise UnknownOutcome("VK: непонятный ответ на пакетный запрос", code="vk:execute")
        except _VkError as error:
            return [(self._error(error, account, messages[part.index].target), False) for part in batch]
        except AdapterError as error:
            return [(error, False)] * len(batch)
        errors = iter(body.get("execute_errors") or [])
        out: list[tuple[str | AdapterError, bool]] = []
        for part, value in zip(batch, response, strict=True):
            target = messages[part.index].target
            if value is False:
                entry = next(errors, None)
                if isinstance(entry, dict) and isinstance(entry.get("error_code"), int):
                    code = entry["error_code"]
                    log.warning(
                        "vk execute: messages.send for account %r to %s failed: error %s",
                        account,
                        target,
                        code,
                    )
                    if code == 6:
                        self._limiters.for_token(token, self._rate).penalize(self._rate_penalty)
                    vk_error = _VkError(code, self._scrub(str(entry.get("error_msg", ""))))
                    out.append((self._error(vk_error, account, target), code in _RETRYABLE))
                else:
                    out.append((TransientError("VK не сообщил причину ошибки", code="vk:execute"), True))
                continue
            try:
                out.append((_message_id(value, target), False))
            except AdapterError as error:
                out.append((error, False))
        return out

    # --- one request ---------------------------------------------------------------------------------

    async def _call(
        self,
        account: str,
        token: str,
        method: str,
        params: dict[str, str],
        *,
        whole: bool = False,
        attempts: int | None = None,
    ) -> Any:
        """POST one API method; retry 1/10/5xx/connection failures. Returns `response` (or the whole body).

        Raises `_VkError` for an API error the caller maps, or an `AdapterError` for transport failures.
        """
        bucket = self._limiters.for_token(token, self._rate)
        attempts = max(1, attempts or self._attempts)
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            await bucket.acquire()
            try:
                body = await self._post(account, token, method, params)
            except _Retryable as failure:
                if last:
                    raise TransientError(failure.text, code=failure.code, retry_after=TRANSIENT_PAUSE) from None
                await asyncio.sleep(self._backoff * 2**attempt)
                continue
            error = body.get("error")
            if isinstance(error, dict):
                code = error.get("error_code")
                msg = self._scrub(str(error.get("error_msg", "")))
                if not isinstance(code, int):
                    raise UnknownOutcome("VK: непонятный ответ с ошибкой", code="vk:?")
                log.warning("vk %s for account %r failed: error %s %s", method, account, code, msg)
                if code == 6:
                    bucket.penalize(self._rate_penalty)
                if code in _RETRYABLE and not last:
                    await asyncio.sleep(self._backoff * 2**attempt)
                    continue
                raise _VkError(code, msg)
            if "response" not in body:
                raise UnknownOutcome("VK: в ответе нет поля response", code="vk:?")
            return body if whole else body["response"]
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, account: str, token: str, method: str, params: dict[str, str]) -> dict[str, Any]:
        data = {"access_token": token, "v": self._version, **params}
        session = self._http()
        try:
            async with session.post(self._url + method, data=data, timeout=self._timeout) as response:
                if response.status >= 500:
                    raise _Retryable(f"VK: сервер ответил HTTP {response.status}", f"vk:http:{response.status}")
                if response.status == 429:
                    self._limiters.for_token(token, self._rate).penalize(self._rate_penalty)
                    raise RateLimited(
                        "VK: слишком много запросов (HTTP 429)",
                        code="vk:http:429",
                        retry_after=self._rate_penalty,
                    )
                if response.status != 200:
                    raise PermanentError(f"VK ответил HTTP {response.status}", code=f"vk:http:{response.status}")
                raw = await response.read()
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            log.warning("vk %s for account %r: cannot connect (%s)", method, account, type(exc).__name__)
            raise _Retryable("VK: нет соединения с сервером", "vk:connect") from None
        except TimeoutError:
            log.warning("vk %s for account %r: no answer in time", method, account)
            raise UnknownOutcome("VK не ответил вовремя; повторная отправка безопасна", code="vk:timeout") from None
        except aiohttp.ClientError as exc:
            log.warning("vk %s for account %r: connection lost (%s)", method, account, type(exc).__name__)
            raise UnknownOutcome(
                "Соединение с VK оборвалось до ответа; повторная отправка безопасна", code="vk:disconnected"
            ) from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise UnknownOutcome("VK: ответ не в формате JSON", code="vk:json") from None
        if not isinstance(body, dict):
            raise UnknownOutcome("VK: ответ не в формате JSON", code="vk:json")
        return body

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    # --- helpers -------------------------------------------------------------------------------------

    def _token(self, account: str) -> str:
        token = self._accounts.get(account)
        if not token:
            raise CredentialError(f"Для учётной записи «{account}» не задан ключ доступа VK", code="vk:account")
        return token

    def _parts(self, message: Message, index: int) -> list[_Part]:
        try:
            peer = int(message.target)
        except ValueError:
            raise PermanentError(f"Неверный адрес чата VK: «{message.target}»", code="vk:target") from None
        chunks = split_text(message.plain_text(), self._text_limit, units=utf16_length)
        if not chunks:
            raise PermanentError("Пустое сообщение", code="vk:empty")
        return [
            _Part(
                index,
                number,
                peer,
                {
                    "peer_id": str(peer),
                    "random_id": str(random_id(message.key, number)),
                    "message": chunk,
                    "dont_parse_links": "1",
                    "disable_mentions": "1",
                },
            )
            for number, chunk in enumerate(chunks)
        ]

    def _scrub(self, text: str) -> str:
        for token in self._accounts.values():
            if token:
                text = text.replace(token, "***")
        return text[:300]

    def _error(self, error: _VkError, account: str, target: str) -> AdapterError:
        code = f"vk:{error.code}"
        template = _TEXTS.get(error.code, "VK отклонил сообщение: ошибка {code}")
        text = template.format(account=account, target=target, code=error.code)
        if error.code not in _TEXTS or error.code == 100:
            text = f"{text} ({self._scrub(error.msg)})" if error.msg else text
        if error.code == 6:
            return RateLimited(text, code=code, retry_after=self._rate_penalty)
        if error.code in _RETRYABLE:
            return TransientError(text, code=code, retry_after=TRANSIENT_PAUSE)
        if error.code == 9:
            return TransientError(text, code=code, retry_after=FLOOD_PAUSE)
        if error.code == 29:
            return TransientError(text, code=code, retry_after=QUOTA_PAUSE)
        if error.code in _CREDENTIAL:
            return CredentialError(text, code=code)
        if error.code in _DEAD:
            return DeadTarget(text, code=code)
        return PermanentError(text, code=code)


class _Retryable(Exception):
    """A failure before VK could act on the request (HTTP 5xx, no connection): retried here."""

    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


def _message_id(value: Any, target: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnknownOutcome(f"VK: непонятный ответ на отправку в чат {target}", code="vk:?")
    return str(value)


def _script_call(params: dict[str, str]) -> str:
    """One `API.messages.send({...})` of an execute script. random_id stays a string: VKScript numbers may be
    doubles, which would round a 63-bit id."""
    args: dict[str, Any] = {
        key: int(value) if key in ("peer_id", "dont_parse_links", "disable_mentions") else value
        for key, value in params.items()
    }
    return "API.messages.send(" + json.dumps(args, ensure_ascii=False) + ")"
