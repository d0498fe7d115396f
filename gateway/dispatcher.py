"""Sending what is due: claim deliveries under a lease, send them through their channel, record the outcomes.

Lanes per channel (one for e-mail, `accounts_in_parallel` per messenger) claim due deliveries, send them in
chunks, fenced by their leases (`Leases`), and record each chunk's outcomes, kept until the store takes them.
The adapter's error class decides what an outcome does to a delivery; provider outages are watched per
account (`_watch`). How and why: docs/architecture.md, "The dispatcher" and the sections after it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from adapters.base import (
    AdapterError,
    Channel,
    CredentialError,
    DeadTarget,
    LeaseLost,
    Message,
    Outcome,
    RateLimited,
    Sent,
    TransientError,
    UnknownOutcome,
    guarded,
)
from gateway.clock import Clock
from gateway.config import DispatchSettings
from gateway.domain import EMAIL, Status
from gateway.store import unavailable
from gateway.store.base import AnnouncementRecord, Claimed, Result, Store

log = logging.getLogger("zvonok.dispatcher")

Render = Callable[[Sequence[Claimed], Mapping[int, AnnouncementRecord]], Message]
"""One message for a delivery, or for a bundle of deliveries of one chat (with their announcements by id)."""
Allowed = Callable[[Claimed, AnnouncementRecord, datetime], datetime]
"""The earliest moment at or after the given time when the delivery may go out (the window rules)."""


OUTAGE_ALERT = timedelta(minutes=1)  # a provider failing this long raises an alert
PROBE_EVERY = timedelta(seconds=5)  # during an outage one delivery retries this often, to notice the return


def _chunks(claimed: Sequence[Claimed], size: int) -> list[list[Claimed]]:
    """Chunks of about `size`, never splitting a bundle (its members are one message)."""
    groups: dict[int, list[Claimed]] = {}
    for c in claimed:
        groups.setdefault(c.bundle if c.bundle is not None else -c.id, []).append(c)
    chunks: list[list[Claimed]] = [[]]
    for group in groups.values():
        if chunks[-1] and len(chunks[-1]) + len(group) > size:
            chunks.append([])
        chunks[-1].extend(group)
    return [chunk for chunk in chunks if chunk]


def _always(claimed: Claimed, announcement: AnnouncementRecord, when: datetime) -> datetime:
    return when


class Leases:
    """The leases of one claimed batch, as this process last confirmed them with the store.

    The heartbeat renews them every third of a lease; the fence (`guard`), which every adapter passes immediately
    before a request that can deliver (`adapters.base.before_request`), refuses a delivery no longer held. While
    the heartbeat keeps up the fence costs one reading of the monotonic clock; after a pause longer than half a
    lease (the process was stopped, the machine swapped, a collection ran long) it asks the store once for the
    whole batch, and a delivery another sender has taken over meanwhile is not sent."""

    def __init__(self, store: Store, claimed: Sequence[Claimed], seconds: float, clock: Clock) -> None:
        self.store = store
        self.seconds = seconds
        self.clock = clock
        self.tokens = {c.id: c.lease_token for c in claimed}
        self.held = set(self.tokens)
        self.confirmed = time.monotonic()  # when the store last said they were ours (the claim, a renewal)
        self._ids: dict[str, list[int]] = {}
        self._lock = asyncio.Lock()

    def cover(self, key: str, group: Sequence[Claimed]) -> None:
        """The deliveries the message `key` delivers."""
        self._ids[key] = [c.id for c in group]

    async def renew(self) -> None:
        async with self._lock:
            asked = time.monotonic()
            leases = [(i, t) for i, t in self.tokens.items() if i in self.held]
            self.held = await self.store.extend_leases(leases, self.clock.now() + timedelta(seconds=self.seconds))
            self.confirmed = asked

    async def guard(self, message: Message) -> None:
        if time.monotonic() - self.confirmed > self.seconds / 2:
            try:
                await self.renew()
            except Exception as exc:  # the store cannot say: send only while the lease surely still runs
                if time.monotonic() - self.confirmed > self.seconds * 0.8:
                    raise LeaseLost(f"аренда не подтверждена: {type(exc).__name__}", code="lease") from None
        if not all(i in self.held for i in self._ids.get(message.key, ())):
            raise LeaseLost("доставку забрал другой обработчик", code="lease")


class StoreTrouble:
    """One warning when the store starts failing and one when it works again, rather than a traceback per lane
    per poll: the work waits in the store (or, for outcomes the provider confirmed, in memory) meanwhile. Each part
    of the dispatcher that uses the store (a lane, the recording of outcomes) reports for itself; the store works
    again once none of them fails."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.since: datetime | None = None
        self.reason = ""
        self._failing: set[str] = set()

    def failed(self, where: str, exc: BaseException) -> None:
        self._failing.add(where)
        if self.since is None:
            self.since = self.clock.now()
            self.reason = unavailable(exc) or f"{type(exc).__name__}: {exc}"
            log.warning("the store failed (%s: %s); dispatch waits and retries", type(exc).__name__, exc)

    def recovered(self, where: str) -> tuple[datetime, str] | None:
        """When the store works again: since when it had not, and why (None while it still fails somewhere, or
        when it never stopped)."""
        self._failing.discard(where)
        if self.since is None or self._failing:
            return None
        since, self.since = self.since, None
        log.warning("the store works again after %.0f s", (self.clock.now() - since).total_seconds())
        return since, self.reason


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        render: Render,
        clock: Clock,
        settings: DispatchSettings,
        *,
        chunk_sizes: Mapping[str, int] | None = None,
        rng: random.Random | None = None,
        allowed: Allowed = _always,
        schools: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.render = render
        self.allowed = allowed
        self.clock = clock
        self.settings = settings
        self.chunk_sizes = {"email": 16, "max": 30, "vk": 100, **(chunk_sizes or {})}
        self.rng = rng or random.Random()
        self._kicks: set[asyncio.Event] = set()  # one per running lane: set to make it look for work now
        self._stop: asyncio.Event | None = None  # set: no new batch is claimed (run() is ending)
        self._announcements: dict[int, AnnouncementRecord] = {}
        self.store_trouble = StoreTrouble(clock)
        self.schools = list(schools)  # whom an outage of a shared account (the SMTP relay) concerns
        self._outages: dict[tuple[str, str], datetime] = {}  # (channel, account) -> since when its sends fail

    # ------------------------------------------------------------------ running

    def wake(self) -> None:
        """New work may be due (an announcement was committed, a window opened): every lane looks."""
        for kick in self._kicks:
            kick.set()

    async def run_once(self) -> int:
        """Send everything due now, in every lane; returns how many deliveries were attempted."""
        counts = await asyncio.gather(*(self._drain(name) for name in self.channels))
        return sum(counts)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep sending until `stop` is set. Each lane runs on its own: it drains, then sleeps until its channel's
        next due time, a wake-up (this process's own, or another process's commit the store tells of:
        `Store.wait_for_work`) or the fallback poll; a lane still sending MAX's long queue keeps no other lane
        (e-mail, VK, another school's MAX token) waiting.

        Once `stop` is set, the batches already claimed are sent and recorded, and no new one is claimed: a
        process told to stop (SIGTERM) ends within one batch, and leaves the rest to the others."""
        self._stop = stop
        listener: asyncio.Task[None] | None = None
        try:
            await self.store.listen()  # before the first claim: whatever is committed after it wakes us
            listener = asyncio.create_task(self._hear_other_processes())
            lanes = []
            for name in self.channels:
                busy: set[str] = set()
                claiming = asyncio.Lock()
                lanes += [self._lane(name, busy, claiming, stop) for _ in range(self._claimers(name))]
            await asyncio.gather(*lanes)
        finally:
            self._stop = None
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _lane(self, channel_name: str, busy: set[str], claiming: asyncio.Lock, stop: asyncio.Event) -> None:
        """One claimer of a channel, until `stop`: send what is due, then wait for more."""
        kick = asyncio.Event()
        self._kicks.add(kick)
        try:
            while not stop.is_set():
                kick.clear()  # a wake-up from here on is not slept through
                delay = self.settings.poll_seconds
                try:
                    await self._claim_and_send(channel_name, busy, claiming)
                    # what the other claimers of this lane are sending is theirs to look after
                    due = await self.store.next_due(channels=(channel_name,), skip_accounts=sorted(busy))
                    if due is not None:
                        delay = min(delay, max(0.0, (due - self.clock.now()).total_seconds()))
                except Exception as exc:  # a store hiccup must not end the service; the work is still in the store
                    if unavailable(exc) is None:  # not the database being away: a fault of ours, worth its traceback
                        log.exception("dispatch failed in the %s lane; retrying", channel_name)
                    self.store_trouble.failed(channel_name, exc)
                else:
                    await self._store_back(self.store_trouble.recovered(channel_name))
                waiters = {asyncio.ensure_future(kick.wait()), asyncio.ensure_future(stop.wait())}
                _, pending = await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._kicks.discard(kick)

    async def _hear_other_processes(self) -> None:
        """Wake every lane when another process commits work (PostgreSQL's LISTEN/NOTIFY; SQLite hears nothing
        and the lanes' poll finds it). Runs until cancelled."""
        while True:
            try:
                if await self.store.wait_for_work(self.settings.poll_seconds):
                    self.wake()
            except Exception as exc:  # e.g. the database is unreachable: the lanes' poll still runs
                log.warning("waiting for new work failed (%s); polling instead", type(exc).__name__)
                await asyncio.sleep(self.settings.poll_seconds)

    def _claimers(self, channel_name: str) -> int:
        """A messenger's limits are per account (bot token): its lane claims for up to `accounts_in_parallel`
        accounts at once, each claim skipping the accounts already being sent for here, so one school's long
        queue (600 chats take 21 s at MAX's 28 per second) never holds up the others'. E-mail goes to one SMTP
        server through one pool: one claimer."""
        return 1 if channel_name == EMAIL else self.settings.accounts_in_parallel

    async def _drain(self, channel_name: str) -> int:
        """Send the channel's due deliveries, with all its claimers, until nothing is due."""
        busy: set[str] = set()
        claiming = asyncio.Lock()
        claimers = range(self._claimers(channel_name))
        counts = await asyncio.gather(*(self._claim_and_send(channel_name, busy, claiming) for _ in claimers))
        return sum(counts)

    async def _claim_and_send(self, channel_name: str, busy: set[str], claiming: asyncio.Lock) -> int:
        total = 0
        while self._stop is None or not self._stop.is_set():
            async with claiming:  # so that two claimers here never pick the same account
                claimed = await self.store.claim(
                    self.clock.now(),
                    self.settings.batch_size,
                    self.settings.lease_seconds,
                    channels=(channel_name,),
                    skip_accounts=sorted(busy),
                )
                accounts = {c.account for c in claimed} - busy
                busy |= accounts
            if not claimed:
                return total
            total += len(claimed)
            chunks = _chunks(claimed, self.chunk_sizes.get(channel_name, 16))
            leases = Leases(self.store, claimed, self.settings.lease_seconds, self.clock)
            heartbeat = asyncio.create_task(self._keep_leases(leases))
            try:
                await asyncio.gather(*(self._send_chunk(channel_name, chunk, leases) for chunk in chunks))
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
                busy -= accounts
        return total

    async def _keep_leases(self, leases: Leases) -> None:
        """While a batch is being sent, extend its leases every third of a lease. A send can be slow and alive (a
        token's rate shared with other processes, a provider's pause): it must not be taken over as if its sender
        had died, or both would send. A sender that dies stops extending, and its leases run out as before."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await leases.renew()
            except Exception as exc:  # the next beat tries again; a lease that runs out meanwhile is taken over
                log.warning("could not extend %d leases (%s)", len(leases.tokens), type(exc).__name__)

    # ------------------------------------------------------------------ one chunk

    async def _send_chunk(self, channel_name: str, claimed: Sequence[Claimed], leases: Leases) -> None:
        channel = self.channels[channel_name]
        started = self.clock.now()
        announcements = {c.announcement_id: await self._announcement(c.announcement_id) for c in claimed}
        results: list[Result] = []
        groups: dict[int, list[Claimed]] = {}
        for c in claimed:
            opens = self.allowed(c, announcements[c.announcement_id], started)
            if opens > started:  # a delivery that may have gone out stays "unknown": reconciled before any send
                waiting = Status.UNKNOWN if c.maybe_sent else Status.PENDING
                results.append(Result(c.id, c.lease_token, waiting, started, "deferred", retry_at=opens))
            else:
                groups.setdefault(c.bundle if c.bundle is not None else -c.id, []).append(c)
        settled = started + timedelta(seconds=self.settings.lease_seconds)
        for key, group in list(groups.items()):
            if any(c.taken_over for c in group):  # its sender may still be sending it: look once it must be done
                del groups[key]
                results.extend(
                    Result(c.id, c.lease_token, Status.UNKNOWN, started, "deferred", retry_at=settled) for c in group
                )
        members = list(groups.values())
        messages = [self.render(group, announcements) for group in members]
        for message, group in zip(messages, members, strict=True):
            leases.cover(message.key, group)
        with guarded(leases.guard):  # every request that can deliver is fenced by the batch's leases
            outcomes, reconciled = await self._outcomes(channel, channel_name, members, messages)
        lost = 0
        for i, (group, got) in enumerate(zip(members, outcomes, strict=True)):
            if isinstance(got, LeaseLost):  # another sender has it now: its outcome is theirs to record
                lost += len(group)
                continue
            leader = self._result(group[0], got, started, reconciled=i in reconciled)
            results.extend(replace(leader, delivery_id=c.id, lease_token=c.lease_token) for c in group)
        if lost:
            log.warning("%d %s deliveries not sent: their leases ran out, another sender has them", lost, channel_name)
        await self._record(results)
        await self._watch(channel_name, members, outcomes)

    async def _watch(self, channel_name: str, members: Sequence[list[Claimed]], outcomes: Sequence[Outcome]) -> None:
        """Outages of a provider (an account's bot, the SMTP relay), as its sends show them. While its sends fail
        for now, one waiting delivery is due again every `PROBE_EVERY` (the others keep their backoff); a run of
        such failures that lasts `OUTAGE_ALERT` raises an alert for the schools using the account. The first send
        that goes through again closes it and brings the account's other waiting deliveries forward, so what
        waited through the outage goes out at once (at the provider's rate), not each at its own backoff."""
        now = self.clock.now()
        by_account: dict[str, list[Outcome]] = {}
        for group, got in zip(members, outcomes, strict=True):
            by_account.setdefault(group[0].account, []).append(got)
        for account, answers in by_account.items():
            key = (channel_name, account)
            subject = f"{channel_name}:{account}"
            if any(isinstance(o, Sent) for o in answers):
                since = self._outages.pop(key, None)
                if since is not None:
                    forward = await self.store.bring_forward(channel_name, account, now)
                    await self.store.resolve_alerts("outage", subject, now)
                    log.warning("%s works again after %.0f s; %d deliveries brought forward", subject,
                                (now - since).total_seconds(), forward)  # fmt: skip
                    if forward:
                        self.wake()
                continue
            failures = [o for o in answers if isinstance(o, TransientError) and not isinstance(o, RateLimited)]
            if not failures:
                continue
            since = self._outages.setdefault(key, now)
            await self.store.probe(channel_name, account, now + PROBE_EVERY, below=self.settings.max_attempts - 1)
            if now - since >= OUTAGE_ALERT:
                what = "Почтовый сервер (SMTP)" if channel_name == EMAIL else channel_name.upper()
                minutes = max(1, round((now - since).total_seconds() / 60))
                message = (
                    f"{what} не принимает сообщения уже {minutes} мин: {failures[0]}. Доставки ждут и уйдут, "
                    "как только связь вернётся; проверьте сервер и сеть"
                )
                for school_id in [account] if account in self.schools else self.schools:
                    await self.store.raise_alert(school_id, "outage", subject, message, now)

    async def _outcomes(
        self, channel: Channel, channel_name: str, members: Sequence[list[Claimed]], messages: Sequence[Message]
    ) -> tuple[list[Outcome], set[int]]:
        """Each message's outcome, and which were found by a look rather than sent: whatever may have been sent
        before is looked for with the provider first (`find_sent`), the rest is sent."""
        outcomes: list[Outcome | None] = [None] * len(members)
        checks = [i for i, group in enumerate(members) if any(c.maybe_sent for c in group)]
        if checks:
            found = await asyncio.gather(*(channel.find_sent(messages[i]) for i in checks), return_exceptions=True)
            for i, result in zip(checks, found, strict=True):
                if isinstance(result, Sent | AdapterError):
                    outcomes[i] = result
                elif isinstance(result, BaseException):
                    log.error("find_sent failed unexpectedly for delivery %s: %r", members[i][0].id, result)
                    outcomes[i] = UnknownOutcome("проверка доставки не удалась", code="internal")
        reconciled = {i for i in checks if isinstance(outcomes[i], Sent)}  # found: the earlier send had arrived
        to_send = [i for i, o in enumerate(outcomes) if o is None]
        if to_send:
            try:
                sent = await channel.send_many([messages[i] for i in to_send])
            except Exception as exc:  # an adapter bug: we cannot know what left, so reconcile later
                log.exception("adapter %s failed unexpectedly", channel_name)
                error = UnknownOutcome(f"внутренняя ошибка адаптера: {type(exc).__name__}", code="internal")
                sent = [error] * len(to_send)
            for i, answer in zip(to_send, sent, strict=True):
                outcomes[i] = answer
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(outcomes), "every message has its outcome"
        return done, reconciled

    async def _record(self, results: Sequence[Result]) -> None:
        """Commit the outcomes, retrying until the store takes them: the provider has them already, so only a
        dead process may lose them (the heartbeat keeps the leases meanwhile, and `finish` is fenced by them)."""
        pause = 0.5
        while True:
            try:
                await self.store.finish(results, self.clock.now())
            except Exception as exc:
                self.store_trouble.failed("outcomes", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.settings.lease_seconds / 3)
                continue
            await self._store_back(self.store_trouble.recovered("outcomes"))
            return

    async def _store_back(self, outage: tuple[datetime, str] | None) -> None:
        """After a store outage of `OUTAGE_ALERT` or more, an alert for every school says it happened (written
        now: while it lasted, the store could take nothing). It stays open until the IT admin has read it."""
        if outage is None:
            return
        since, reason = outage
        now = self.clock.now()
        minutes = (now - since).total_seconds() / 60
        if now - since < OUTAGE_ALERT:
            return
        message = (
            f"база данных не принимала записи {minutes:.0f} мин (с {since:%d.%m %H:%M} UTC): {reason}. Доставки ждали "
            "и ушли, когда она заработала; проверьте место на диске и сервер базы данных"
        )
        try:
            for school_id in self.schools:
                await self.store.raise_alert(school_id, "store", f"store:{since.isoformat()}", message, now)
        except Exception as exc:  # failing again already: the next recovery tells of it
            log.warning("could not record the store outage as an alert (%s)", type(exc).__name__)

    def _result(self, claimed: Claimed, outcome: Outcome, started: datetime, *, reconciled: bool) -> Result:
        if isinstance(outcome, Sent):
            label = "reconciled" if reconciled else "delivered"
            return Result(claimed.id, claimed.lease_token, Status.DELIVERED, started, label, outcome.provider_id)
        is_chat = claimed.channel != EMAIL

        def failed(status: Status, label: str, error: str = str(outcome), **extra: Any) -> Result:
            return Result(
                claimed.id, claimed.lease_token, status, started, label, error_code=outcome.code, error=error, **extra
            )

        if isinstance(outcome, TransientError):
            if claimed.attempt >= self.settings.max_attempts:
                error = f"попытки исчерпаны ({claimed.attempt}): {outcome}"
                return failed(Status.PERMANENT_FAILURE, "exhausted", error, fallback=is_chat)
            if isinstance(outcome, UnknownOutcome):
                # the provider may still store a late request: give it the adapter's pause before looking; when
                # it is still unknown after a look (the provider is down), back off as after any failure, or an
                # outage of a minute or two would use up every attempt
                pause = max(self.settings.unknown_recheck_seconds, outcome.retry_after or 0.0)
                if claimed.attempt > 1:
                    pause = max(pause, self.backoff(claimed.attempt - 1))
                recheck = self.clock.now() + timedelta(seconds=pause)
                return failed(Status.UNKNOWN, "unknown", retry_at=recheck)
            pause = self.backoff(claimed.attempt, outcome.retry_after)
            label = "rate_limited" if isinstance(outcome, RateLimited) else "transient"
            return failed(Status.TEMPORARY_FAILURE, label, retry_at=self.clock.now() + timedelta(seconds=pause))
        if isinstance(outcome, DeadTarget):
            return failed(Status.PERMANENT_FAILURE, "dead_target", fallback=is_chat, dead_chat=is_chat)
        if isinstance(outcome, CredentialError):
            alert = f"{claimed.channel.upper()}: учётные данные отклонены ({outcome}); проверьте токен или пароль"
            return failed(Status.PERMANENT_FAILURE, "credential", fallback=is_chat, alert=alert)
        return failed(Status.PERMANENT_FAILURE, "permanent", fallback=is_chat)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1`: exponential from the base, capped, half-jittered."""
        s = self.settings
        ceiling = min(s.retry_cap_seconds, s.retry_base_seconds * 2.0 ** max(0, attempt - 1))
        delay = ceiling / 2 + self.rng.uniform(0, ceiling / 2)
        return delay if retry_after is None else max(delay, retry_after)

    async def _announcement(self, announcement_id: int) -> AnnouncementRecord:
        record = self._announcements.get(announcement_id)
        if record is None:
            found = await self.store.announcement(announcement_id)
            if found is None:
                raise LookupError(f"announcement {announcement_id} vanished")
            if len(self._announcements) > 1000:
                self._announcements.clear()
            record = self._announcements[announcement_id] = found
        return record
