"""The store contract: what the gateway keeps, and the transactions it needs. The store is the source of truth.

Guarantees every backend keeps:
- `create_announcement` commits the announcement with all its deliveries, coverage and gaps, or nothing; the
  same (school, idempotency key) creates it once.
- `claim` hands a due delivery to one caller at a time under a lease; when the lease runs out (the caller
  died), the delivery is due again and is marked `maybe_sent`, so the sender reconciles before resending.
  `extend_leases` keeps the leases of a sender that is alive but slow (a token's rate shared by processes).
- `finish` records outcomes only for the lease that is still current (a late answer from a dead lease is
  dropped), writes one attempt row per outcome, and on a chat's permanent failure moves that chat's people to
  e-mail in the same transaction. A `deferred` outcome (due, but outside its window) returns the delivery to
  waiting at a later time without counting an attempt, with the Result's status (pending, or unknown when it
  may already have gone out, so that it is reconciled before any send).
- Held chat deliveries of one chat waiting for the same window opening are claimed together, as one bundle
  (`Claimed.bundle`, the leading delivery's id), every time: their message and its dedup key never change.
- `forward` turns an open (or escalated) forwarding task into deliveries exactly once.
- `claim_tick` says True to exactly one caller per (job, period), across processes: a periodic job's run.
- `set_class_window` and `reset_class_window` change a class's run-time window and write the audit log in the
  same transaction.
- Where several processes share the store (`shares_rate_limits`), `reserve_permits` hands out each credential's
  permits once, in order, at the rate asked: processes that pace their requests by them stay under the limit
  together.
- `purge_personal_data` removes, in one transaction, the personal data of announcements older than a cut-off
  whose work is done, and the guardians who left before it, writing one audit line per school; a second run
  clears nothing more.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import ClassVar

from gateway.domain import AnnouncementRequest, Guardian, School, Status
from gateway.planner import Plan, PlannedDelivery
from schedules.windows import MessagingWindow


@dataclass(frozen=True, slots=True)
class AnnouncementRecord:
    id: int
    school_id: str
    author: str
    kind: str
    title: str
    text: str
    audience_label: str
    created_at: datetime
    send_at: datetime | None
    cancelled_at: datetime | None = None
    request_digest: str | None = None  # what its Idempotency-Key was first used for (None: made before it was kept)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery handed to a sender under a lease."""

    id: int
    announcement_id: int
    channel: str
    account: str
    target: str
    class_name: str
    chat_kind: str
    recipient_name: str
    attempt: int
    maybe_sent: bool
    lease_token: str
    bundle: int | None = None  # deliveries claimed as one message share the leader's id
    addendum: str = ""  # the class teacher's note, for a forwarded delivery
    note: str = ""  # why the delivery exists (planner.Note): "escalation" letters are rendered differently
    taken_over: bool = False  # it was being sent and its lease ran out: its sender may still be at work


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one attempt, as the dispatcher decided it."""

    delivery_id: int
    lease_token: str
    status: Status
    started_at: datetime
    outcome: str  # attempt label: delivered, reconciled, transient, rate_limited, unknown, permanent, ...
    provider_id: str = ""
    error_code: str = ""
    error: str = ""
    retry_at: datetime | None = None
    fallback: bool = False  # a chat failed for good: e-mail the people it was to reach
    dead_chat: bool = False  # ... because the chat itself is gone: remember it and alert the admin
    alert: str = ""  # a problem an admin must fix (a refused bot token)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    channel: str
    target: str
    class_name: str
    chat_kind: str
    recipient_name: str
    note: str
    status: Status
    attempts: int
    error_code: str
    last_error: str
    provider_id: str
    not_before: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class CoverageRow:
    person: str
    class_name: str
    route: str
    note: str
    email: str
    name: str
    phone: str
    students: str
    opted_out: bool
    delivery_id: int | None
    delivery_status: Status | None
    delivery_error: str


@dataclass(frozen=True, slots=True)
class GapRow:
    class_name: str
    chat_kind: str
    note: str


@dataclass(frozen=True, slots=True)
class AttemptRow:
    delivery_id: int
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error_code: str
    error: str


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    school_id: str
    created_at: datetime
    kind: str
    subject: str
    message: str


@dataclass(frozen=True, slots=True)
class ChatRow:
    """A chat the gateway knows: from the configuration, a bot_added webhook, or a failed send."""

    channel: str
    address: str
    school_id: str
    class_name: str
    kind: str
    title: str
    status: str  # active | dead
    status_reason: str
    source: str  # config | webhook | dispatch | check
    updated_at: datetime
    checked_at: datetime | None


@dataclass(frozen=True, slots=True)
class TaskRow:
    """A class teacher's forwarding task."""

    id: int
    announcement_id: int
    school_id: str
    class_name: str
    teacher: str
    groups: tuple[str, ...]
    deadline: datetime
    status: str  # open | forwarded | auto_forwarded | escalated
    note: str
    done_at: datetime | None
    done_by: str


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    school_id: str
    at: datetime
    actor: str
    action: str
    announcement_id: int | None
    details: str


@dataclass(frozen=True, slots=True)
class RosterChange:
    added: int
    updated: int
    left: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A staff member's browser session (the store knows only the hash of its id)."""

    school_id: str
    staff_id: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An integration's API token, acting as a staff member (the store knows only its hash)."""

    id: int
    school_id: str
    staff_id: str
    label: str
    created_at: datetime
    revoked_at: datetime | None = None


def ts(when: datetime) -> str:
    """A UTC timestamp as fixed-width text, so that text order is time order: the SQLite store's columns, and the
    times in `deliveries_json` (PostgreSQL reads them as timestamptz)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def text_columns(d: PlannedDelivery) -> tuple[str, str, str, str, str, str, str]:
    """A planned delivery's text columns, in the order both stores write them: channel, account, target,
    class_name, chat_kind ('' for e-mail), recipient_name, note."""
    return (
        d.channel,
        d.account,
        d.target,
        d.class_name,
        d.chat_kind.value if d.chat_kind else "",
        d.recipient_name,
        d.note.value,
    )


def deliveries_json(deliveries: Sequence[PlannedDelivery]) -> str:
    """Planned deliveries as one JSON text, each a row: the `text_columns`, not_before (`ts`) and held.

    The stores insert deliveries from it in one statement (SQLite a post's too: built before the transaction, in
    one C call of json, its store thread spends no time in Python between statements).
    """
    stamps: dict[datetime, str] = {}  # a post's deliveries share a handful of times
    rows = []
    for d in deliveries:
        when = stamps.get(d.not_before)
        if when is None:
            when = stamps[d.not_before] = ts(d.not_before)
        rows.append((*text_columns(d), when, d.held))
    return json.dumps(rows, ensure_ascii=False)


def hhmm(value: time) -> str:
    """A window boundary as the store keeps it: "HH:MM" (whole minutes only)."""
    if value.second or value.microsecond or value.tzinfo is not None:
        raise ValueError(f"a class window is whole minutes of the school's wall clock, not {value.isoformat()}")
    return value.strftime("%H:%M")


def window_of(opens: str, closes: str) -> MessagingWindow:
    return MessagingWindow(time.fromisoformat(opens), time.fromisoformat(closes))


@dataclass(frozen=True, slots=True)
class ClassWindowRow:
    """A class's chat window set at run time (by its class teacher, the administration or the IT admin)."""

    school_id: str
    class_name: str
    window: MessagingWindow
    set_by: str
    set_at: datetime


@dataclass(frozen=True, slots=True)
class LetterRow:
    """An e-mail delivery to a family, as the parents' «Ознакомлен» and unsubscribe pages see it."""

    delivery_id: int
    announcement_id: int
    school_id: str
    target: str
    title: str
    acknowledged_at: datetime | None
    opted_out: bool


RETENTION_ACTOR = "хранение данных"
"""Who the audit log names for a retention purge (the system itself, on its configured schedule)."""

PURGED_PREFIX = "удалено-"
"""What stands in a purged announcement for an e-mail address ("удалено-<delivery id>") and for a report line's
person ("удалено-<n>", n numbering the announcement's lines): unique where the schema needs it, naming nobody."""


@dataclass(frozen=True, slots=True)
class Purged:
    """What a retention purge removed (or, dry, would remove) in one school."""

    school_id: str
    announcements: int  # announcements whose recipients' personal data was removed
    letters: int  # their e-mail deliveries: address, name and error text removed
    people: int  # their report lines (coverage rows): no longer linked to a guardian, address removed
    former_guardians: int  # guardians who left the school before the cut-off, deleted with their classes

    def audit(self, cutoff: datetime) -> str:
        """The audit line that records the destruction (152-ФЗ: destruction is recorded)."""
        return (
            f"удалены персональные данные старше срока хранения (до {cutoff.astimezone(UTC):%d.%m.%Y %H:%M} UTC): "
            f"объявлений {self.announcements} (писем {self.letters}, строк отчётов {self.people}), "
            f"выбывших представителей {self.former_guardians}"
        )


class Store(ABC):
    """Durable state. Every method is one transaction."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def installation(self) -> str:
        """This installation's id, made when the schema was created; part of every delivery key."""

    # --- several processes: waking on new work, periodic jobs, shared provider rate limits

    async def listen(self) -> None:
        """Start noticing the work other processes commit (see `wait_for_work`); the dispatcher calls it before
        its first `claim`, so that nothing committed after that claim is slept through. The default does nothing.
        """
        return None

    async def wait_for_work(self, timeout: float) -> bool:  # noqa: ASYNC109 (a timeout is an answer here: False)
        """Wait until another process commits new work (True) or `timeout` seconds pass (False).

        A True may be spurious: the caller looks at the store either way. The default (SQLite) hears no other
        process: it sleeps the timeout and says False. Work committed in the process itself wakes its dispatcher
        directly (`Dispatcher.wake`); another process's commit (a CLI `announce`) is found at the next poll.
        """
        await asyncio.sleep(timeout)
        return False

    @abstractmethod
    async def extend_leases(self, leases: Sequence[tuple[int, str]], until: datetime) -> set[int]:
        """A sender still at work keeps its deliveries: each (delivery id, lease token) whose lease is still
        current is leased until `until` at least (a heartbeat, and the fence before a send); returns the ids that
        were. A delivery finished, or taken over since, is left alone."""

    @abstractmethod
    async def claim_tick(self, job: str, period: str, owner: str, now: datetime) -> bool:
        """Claim one run of a periodic job: True for exactly one caller per (job, period), whichever process it is
        in; `period` names the run (the job's scheduled fire time), `owner` the caller (host:pid)."""

    shares_rate_limits: ClassVar[bool] = False
    """True when several processes send through this store at once, so it keeps the providers' rate limits
    (`reserve_permits`, `hold_permits`); False when one process sends and paces itself (SQLite)."""

    async def reserve_permits(self, key: str, count: int, rate: float, burst: int = 1) -> tuple[float, float, float]:
        """Reserve the next `count` permits of the credential `key` (a token's hash, never the token) at `rate`
        permits per second: the seconds from the store's now until the first of them (the others follow 1/rate
        apart), and the time.monotonic() moments the booking went out and was answered, between which the
        store's now lies. `burst` lets an idle credential start up to (burst - 1)/rate in the past. Only where
        `shares_rate_limits`."""
        raise NotImplementedError(f"{type(self).__name__} keeps no shared rate limits")

    async def hold_permits(self, key: str, seconds: float) -> None:
        """No permit of the credential `key` before `seconds` from now (the provider said "too many requests")."""
        raise NotImplementedError(f"{type(self).__name__} keeps no shared rate limits")

    # --- schools, chats, roster

    @abstractmethod
    async def sync_chats(self, school: School, now: datetime) -> None:
        """Record the school's configured chats (a chat already known keeps its status)."""

    @abstractmethod
    async def dead_chats(self, school_id: str) -> set[tuple[str, str]]:
        """(channel, address) of the school's chats known to be gone."""

    @abstractmethod
    async def chats(self, school_id: str | None = None) -> list[ChatRow]:
        """Every known chat (of one school), mapped or not."""

    @abstractmethod
    async def chat_seen(
        self,
        school_id: str,
        channel: str,
        address: str,
        *,
        alive: bool,
        reason: str,
        title: str,
        source: str,
        now: datetime,
    ) -> bool:
        """Record what a webhook or a health check said of a chat; True when its status changed.

        A dead chat gets an open alert; a chat alive again has its alert resolved. A chat registered to another
        school is left as it is (False): a school's webhook or check speaks only for its own chats.
        """

    @abstractmethod
    async def map_chat(
        self, school_id: str, channel: str, address: str, class_name: str, kind: str, now: datetime
    ) -> None:
        """Say which class's chat (and which kind: parents, students, teachers) a chat registered to the school
        is; NotFound when the school has no such chat."""

    @abstractmethod
    async def replace_roster(
        self,
        school_id: str,
        guardians: Sequence[Guardian],
        students: dict[tuple[str, str], str],
        now: datetime,
    ) -> RosterChange:
        """Make the roster exactly `guardians`; those no longer listed are marked as having left.

        `students` maps (guardian key, class name) to the children's names in that class.
        """

    @abstractmethod
    async def guardians(self, school_id: str) -> list[Guardian]:
        """The school's current guardians (not those who left)."""

    # --- announcements

    @abstractmethod
    async def create_announcement(
        self, request: AnnouncementRequest, plan: Plan, now: datetime, *, audit: str = ""
    ) -> tuple[int, bool]:
        """Commit the announcement and its plan (deliveries, coverage, gaps, forwarding tasks); (id, False) when
        the idempotency key was used before. A non-empty `audit` is written to the audit log as a force-majeure
        override by the author, in the same transaction."""

    @abstractmethod
    async def audit_log(self, school_id: str, limit: int = 100) -> list[AuditRow]:
        """The school's audit log, newest first."""

    # --- forwarding by class teachers

    @abstractmethod
    async def tasks(
        self, *, school_id: str | None = None, announcement_id: int | None = None, teacher: str | None = None
    ) -> list[TaskRow]: ...

    @abstractmethod
    async def forward(
        self, task_id: int, *, actor: str, note: str, status: str, deliveries: Sequence[PlannedDelivery], now: datetime
    ) -> bool:
        """Forward a task: commit its deliveries (with `note` as their addendum), point the class's waiting
        guardians at the parents' chat delivery, and close the task as `status` (forwarded | auto_forwarded).
        False when the task was no longer open or escalated (someone forwarded it already)."""

    @abstractmethod
    async def add_deliveries(
        self, announcement_id: int, deliveries: Sequence[PlannedDelivery], now: datetime, *, addendum: str = ""
    ) -> int:
        """Add deliveries to an announcement (a target it already has is skipped); returns how many were added."""

    @abstractmethod
    async def escalate(self, task_ids: Sequence[int], now: datetime, alert: str) -> list[int]:
        """Mark open tasks escalated (their deadline passed); returns those this call escalated. The school of
        the first one gets `alert` as an open alert."""

    @abstractmethod
    async def announcement(self, announcement_id: int) -> AnnouncementRecord | None: ...

    @abstractmethod
    async def announcement_by_key(self, school_id: str, idempotency_key: str) -> AnnouncementRecord | None:
        """The school's announcement made with this idempotency key, if any."""

    @abstractmethod
    async def announcements(self, school_id: str | None = None, limit: int = 50) -> list[AnnouncementRecord]: ...

    # --- dispatch

    @abstractmethod
    async def claim(
        self,
        now: datetime,
        limit: int,
        lease_seconds: float,
        *,
        channels: Sequence[str] = (),
        skip_accounts: Sequence[str] = (),
    ) -> list[Claimed]:
        """Up to `limit` due deliveries (of these channels; all if none named), leased until now + lease_seconds,
        oldest first; none of the accounts in `skip_accounts` (those the caller is already sending for)."""

    @abstractmethod
    async def finish(self, results: Sequence[Result], now: datetime) -> int:
        """Record outcomes (only for current leases); returns how many were recorded."""

    @abstractmethod
    async def bring_forward(self, channel: str, account: str, now: datetime) -> int:
        """The provider works again: the account's deliveries waiting for a retry after a temporary failure are
        due now rather than at their own backoff; how many."""

    @abstractmethod
    async def probe(self, channel: str, account: str, when: datetime, *, below: int) -> bool:
        """During a provider's outage: unless one of the account's deliveries waiting for a retry is due by `when`
        already, the one tried least (of those tried fewer than `below` times, so that a probe never spends a
        delivery's last attempts) is due at `when`, so that the provider's return is noticed soon; whether one
        was moved."""

    @abstractmethod
    async def backlog(
        self, now: datetime, until: datetime, accounts: Sequence[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], list[tuple[datetime, int]]]:
        """The queue a new announcement waits behind: open deliveries due by `until`, per (channel, account) (of
        `accounts` only, when given: a post needs its own tokens' queues), as (when due, how many) in time order;
        what is due already counts as due `now`."""

    @abstractmethod
    async def next_due(self, *, channels: Sequence[str] = (), skip_accounts: Sequence[str] = ()) -> datetime | None:
        """When the earliest open delivery becomes due (or its lease runs out); None when nothing is open. Only
        of these channels (all if none named), and of none of the accounts in `skip_accounts`, as in `claim`."""

    # --- reading

    @abstractmethod
    async def progress(self, announcement_id: int | None = None) -> dict[Status, int]:
        """Deliveries by status, for one announcement or all."""

    @abstractmethod
    async def deliveries(self, announcement_id: int) -> list[DeliveryRow]: ...

    @abstractmethod
    async def coverage(self, announcement_id: int) -> list[CoverageRow]: ...

    @abstractmethod
    async def gaps(self, announcement_id: int) -> list[GapRow]: ...

    @abstractmethod
    async def attempts(self, delivery_id: int) -> list[AttemptRow]: ...

    @abstractmethod
    async def alerts(self, school_id: str | None = None) -> list[Alert]:
        """Open alerts."""

    @abstractmethod
    async def raise_alert(self, school_id: str, kind: str, subject: str, message: str, now: datetime) -> None:
        """Open an alert for the school's admin, unless one of that kind and subject is open already."""

    @abstractmethod
    async def resolve_alerts(self, kind: str, subject: str, now: datetime) -> int:
        """Close every school's open alerts of that kind and subject (the problem went away); how many."""

    async def database_time(self) -> datetime | None:
        """The database server's clock, where several processes act on the times in the store (PostgreSQL); None
        where one process does (SQLite: its own clock is the only one)."""
        return None

    # --- staff accounts, sessions, API tokens (gateway.web)

    @abstractmethod
    async def set_password(self, school_id: str, staff_id: str, password_hash: str, now: datetime) -> None:
        """Set a staff member's password hash; their open sessions end (a new password logs out everywhere)."""

    @abstractmethod
    async def password_hash(self, school_id: str, staff_id: str) -> str | None: ...

    @abstractmethod
    async def create_session(
        self, id_hash: str, school_id: str, staff_id: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Record a new session (and forget the expired ones)."""

    @abstractmethod
    async def session(self, id_hash: str, now: datetime) -> SessionRow | None:
        """The session with this id hash, unless it expired."""

    @abstractmethod
    async def delete_session(self, id_hash: str) -> None: ...

    @abstractmethod
    async def create_api_token(self, token_hash: str, school_id: str, staff_id: str, label: str, now: datetime) -> int:
        """Record an API token; returns its id."""

    @abstractmethod
    async def api_token(self, token_hash: str) -> TokenRow | None:
        """The token with this hash, unless it was revoked."""

    @abstractmethod
    async def revoke_api_token(self, token_id: int, now: datetime) -> bool:
        """Revoke a token; False when there is no such token still in force."""

    @abstractmethod
    async def api_tokens(self, school_id: str) -> list[TokenRow]:
        """Every API token of the school, revoked ones too (`revoked_at`), oldest first; never their hashes."""

    # --- login throttling (gateway.web.auth)

    @abstractmethod
    async def admit_login(
        self, keys: Sequence[str], hold: Callable[[str, int], timedelta], now: datetime, forget: datetime
    ) -> datetime | None:
        """Count one login attempt against every key, atomically across processes. When a key is held past `now`,
        nothing changes and the answer is the latest moment a key is held until. Otherwise each key counts one
        attempt more (not yet known to have succeeded), is held until `now + hold(key, count)`, and the answer is
        None. A key whose last attempt lies before `forget` counts from zero (and is deleted)."""

    @abstractmethod
    async def login_succeeded(self, forget: Sequence[str], undo: Sequence[str], now: datetime) -> None:
        """An admitted attempt proved right: the `forget` keys are deleted, the `undo` keys count one attempt less
        (the one this login had counted), keeping their hold."""

    # --- class windows set at run time

    @abstractmethod
    async def class_windows(self, school_id: str | None = None) -> list[ClassWindowRow]:
        """The run-time class windows (of one school), by school and class."""

    @abstractmethod
    async def set_class_window(
        self, school_id: str, class_name: str, window: MessagingWindow, actor: str, now: datetime, *, audit: str
    ) -> None:
        """Set (or replace) a class's run-time window, and write `audit` to the audit log as a `class_window`
        action by `actor`, in one transaction. The window must be whole minutes (HH:MM)."""

    @abstractmethod
    async def reset_class_window(
        self, school_id: str, class_name: str, actor: str, now: datetime, *, audit: str
    ) -> bool:
        """Remove a class's run-time window (the configured one applies again) and write `audit` to the audit log
        as a `class_window` action, in one transaction; False (and no audit line) when none was set."""

    # --- parents' links, cancelling

    @abstractmethod
    async def letter(self, delivery_id: int) -> LetterRow | None:
        """The e-mail delivery a parents' link names; None when there is no such e-mail delivery, or its
        announcement's personal data was purged (the address it went to is no longer known)."""

    @abstractmethod
    async def acknowledge(self, delivery_id: int, now: datetime) -> datetime | None:
        """Record «Ознакомлен» for an e-mail delivery once; returns when it was (first) acknowledged, None when
        there is no such e-mail delivery."""

    @abstractmethod
    async def acknowledgements(self, announcement_id: int) -> dict[int, datetime]:
        """Acknowledged e-mail deliveries of an announcement: delivery id -> when."""

    @abstractmethod
    async def opt_out(self, school_id: str, email: str, now: datetime) -> int:
        """Unsubscribe every current guardian of the school with this e-mail; returns how many were subscribed."""

    @abstractmethod
    async def cancel_announcement(self, announcement_id: int, actor: str, now: datetime) -> int:
        """Cancel what of an announcement has not gone out: open deliveries nobody is sending now, and open or
        escalated forwarding tasks; mark the announcement cancelled (once) and write the audit log. Returns how
        many deliveries were cancelled; NotFound when there is no such announcement."""

    @abstractmethod
    async def purge_personal_data(self, cutoff: datetime, now: datetime, *, dry_run: bool = False) -> list[Purged]:
        """Remove the personal data kept past `cutoff`, in one transaction; what was removed, per school (only
        schools with something removed, by id). With `dry_run`, what would be removed, changing nothing.

        - Announcements created before `cutoff`, not purged yet, whose deliveries are all final and whose
          forwarding tasks are none of them open (open work is never touched): every e-mail delivery's target
          becomes "удалено-<its id>" (unique per announcement, as the schema needs), its recipient name and error
          text are emptied, and so are its attempts' error texts (an SMTP reply may quote the address); every
          delivery's recipient name is emptied; every report line (coverage row) gets "удалено-<n>" for its person
          (the guardian key is a hash of the address) and loses its e-mail. The announcement is marked purged
          (`purged_at` = `now`). Statuses, counts, classes, chats, times, acknowledgements (which point at the
          anonymous delivery) and gaps stay, so reports and statistics still add up.
        - Guardians who left the school (`left_at`) before `cutoff` are deleted, with their classes (the
          children's names) and their unsubscription. Current guardians, and their opt-outs, stay.
        - One audit line per school with anything removed: by `RETENTION_ACTOR`, action "retention", at `now`,
          saying how much and the cut-off (`Purged.audit`).

        Idempotent: a purged announcement is never looked at again, a deleted guardian is gone; a second run
        removes nothing and writes no audit line."""

    @abstractmethod
    async def add_audit(
        self, school_id: str, actor: str, action: str, details: str, now: datetime, announcement_id: int | None = None
    ) -> None:
        """Write one line of the school's audit log."""
