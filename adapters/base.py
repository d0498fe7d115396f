"""The contract every channel adapter implements, and the errors it may raise.

An adapter sends one message to one target (a MAX chat, a VK peer, an e-mail address) and either returns a
`Sent` or raises one of the errors below. It never returns a bare bool and never swallows an error: the
dispatcher decides from the error's class what happens to the delivery.

    AdapterError                 root of everything an adapter raises
    ├── LeaseLost                the sender no longer holds the delivery: nothing was sent (`before_request`)
    ├── TransientError           try again later (retry_after: the pause the provider or protocol asks for)
    │   ├── RateLimited          the provider said "too many requests"
    │   └── UnknownOutcome       the request may have reached the provider: reconcile before resending
    └── PermanentError           will never succeed as it is; the delivery ends
        ├── DeadTarget           the chat is gone or closed to us: its people fall back to e-mail
        └── CredentialError      the bot token / SMTP login is refused: an admin must act
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime


class AdapterError(Exception):
    """Root of every error raised by an adapter.

    `code` is the provider's own error identifier, kept for reports ("vk:1012", "max:chat.not.found",
    "smtp:550"). `str(error)` is a short Russian explanation fit for a staff report; it must never contain
    a secret or a recipient's personal data beyond the target it was about.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class LeaseLost(AdapterError):
    """The dispatcher no longer holds the delivery (its lease ran out while the process was paused, and another
    sender took it over): the adapter sent nothing for it, and its outcome is the other sender's to record."""


class TransientError(AdapterError):
    """The send failed for now; the same message may succeed later."""

    def __init__(self, message: str, *, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The provider refused because of its request-rate limit."""


class UnknownOutcome(TransientError):
    """The request left us but no answer came back: it may or may not have been delivered.

    The dispatcher answers this by calling `Channel.find_sent` before any resend.
    """


class PermanentError(AdapterError):
    """The message can never be delivered to this target as it is."""


class DeadTarget(PermanentError):
    """The target chat no longer accepts our messages (bot removed, chat deleted, read-only, disabled)."""


class CredentialError(PermanentError):
    """The credential (bot token, SMTP login) is invalid, revoked or lacks a right: alert the admin."""


@dataclass(frozen=True, slots=True)
class Message:
    """One announcement, rendered for one target of one channel.

    `key` is stable for the delivery across retries and processes; adapters derive their dedup handles from
    it (VK random_id, the MAX reconciliation marker, the e-mail Message-ID). `account` names the credential
    to send with (a school's bot); the adapter maps it to a token. `kind` is the announcement kind's code
    ("schedule_change", "force_majeure", ...) and `kind_label` how people read it ("Изменение расписания").
    """

    key: str
    account: str
    target: str
    school: str
    kind: str
    title: str
    text: str
    kind_label: str = ""
    audience: str = ""
    recipient_name: str = ""
    reference: str = ""
    ack_url: str = ""
    unsubscribe_url: str = ""
    since: datetime | None = None  # no attempt to send it can be older: how far back reconciliation looks
    school_id: str = ""  # the school's own id: names the letters' list (List-Id) whatever account sends them

    @property
    def urgent(self) -> bool:
        """A force-majeure announcement (sent outside the window; e-mail marks it important)."""
        return self.kind == "force_majeure"

    def plain_text(self) -> str:
        """The chat text: title, body and a footer with the school and the announcement's reference."""
        head = f"{self.kind_label}: {self.title}" if self.kind_label else self.title
        footer = " · ".join(part for part in (self.school, self.reference) if part)
        parts = [head.strip(), self.text.strip()]
        if footer:
            parts.append(footer)
        return "\n\n".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class Sent:
    """A successful send: the provider's id of the message (ids of all parts, comma-separated)."""

    provider_id: str
    parts: int = 1


Outcome = Sent | AdapterError


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """Whether we can post to a target now; `explanation` is Russian, for the school's IT admin."""

    ok: bool
    explanation: str
    title: str = ""


class Channel(ABC):
    """One messaging channel. Subclasses implement `send`; batching and reconciliation are optional."""

    name: str

    @abstractmethod
    async def send(self, message: Message) -> Sent:
        """Deliver one message or raise an `AdapterError`."""

    async def send_many(self, messages: Sequence[Message]) -> list[Outcome]:
        """Deliver several messages; one outcome per message, in order. Never raises for one message.

        The default sends them concurrently; adapters that can batch (VK `execute`) override it.
        """
        results = await asyncio.gather(*(self.send(m) for m in messages), return_exceptions=True)
        out: list[Outcome] = []
        for result in results:
            if isinstance(result, Sent | AdapterError):
                out.append(result)
            elif isinstance(result, BaseException):
                raise result
        return out

    async def find_sent(self, message: Message) -> Sent | None:
        """After an unknown outcome: the earlier send if the provider already has it, else None.

        Adapters whose provider deduplicates by itself (VK random_id) or that cannot tell (e-mail) keep
        this default, so the message is simply sent again.
        """
        return None

    async def check(self, account: str, target: str) -> TargetHealth | None:
        """Can the account post to the target? None when the channel cannot tell without sending.

        Raises `CredentialError` for a refused credential and `TransientError` when the provider is unreachable.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


Guard = Callable[[Message], Awaitable[None]]
_GUARD: ContextVar[Guard | None] = ContextVar("zvonok_send_guard", default=None)


async def before_request(message: Message) -> None:
    """Called by an adapter immediately before a request that can deliver `message`, after any wait for a rate
    permit or a connection: the dispatcher's fence raises `LeaseLost` there when the delivery is no longer this
    process's (a process paused past its lease must not post what another sender has since posted). Outside a
    dispatcher (the CLI's checks, the tests of an adapter) there is no fence. VK needs none: it drops a repeated
    random_id by itself."""
    guard = _GUARD.get()
    if guard is not None:
        await guard(message)


@contextmanager
def guarded(guard: Guard) -> Iterator[None]:
    """Sends made inside (and in the tasks they start) pass `guard` before each request."""
    token = _GUARD.set(guard)
    try:
        yield
    finally:
        _GUARD.reset(token)
