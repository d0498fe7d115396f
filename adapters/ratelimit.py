"""Per-credential request-rate limiting, shared by everything that uses the credential.

A provider limits requests per token (MAX 30 rps, VK 20 rps for a community token), so the limiter is keyed by
the token, not by the adapter instance: two adapters holding the same token share one limiter. Adapters see
only the `Limiter` interface: `await acquire()` before each request, `penalize(seconds)` when the provider
still answers "too many requests" (every user of the token stops for the pause).

Two limiters implement it:

- `TokenBucket`, within one process: `burst` requests at once, then one every 1/rate seconds, on a schedule
  that a late wake-up does not push back.
- `ReservingBucket`, across processes: the token's schedule lives outside the process (the gateway keeps it in
  its PostgreSQL store) and the bucket reserves permits from it a small batch at a time (GCRA: the schedule is
  one "next free moment" per token; reserving n permits pushes it n/rate on, in one atomic step), then paces
  its own callers through them. Several processes sharing a token thus take turns a batch at a time, and
  together never go faster than the rate, whatever their number. Why this rather than one owner per token
  (an advisory lock held by one process, the others leaving that token's deliveries alone): with reservations
  every process can send for every token, no delivery waits for one particular process, and a process that
  dies holds at most a batch (a quarter of a second) of unused permits, where an owner's death would stall
  its tokens until its lock is noticed as gone.

`RateLimiters` holds one limiter per token and makes them with a factory: `TokenBucket`s by default; the
composition root (gateway/app.py) passes a factory of `ReservingBucket`s when the store is shared. This module
knows nothing of the store: a `ReservingBucket` is given the two calls it needs (`reserve`, `hold`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Protocol

from adapters.base import TransientError

log = logging.getLogger(__name__)

_EPSILON = 1e-9
MIN_TOLERANCE = 0.010  # at high rates half an interval is shorter than a wake-up or a database round trip


class Reservation(NamedTuple):
    """A run of permits booked from a shared schedule (`ReservingBucket`'s `reserve`)."""

    start: float
    """Seconds from the schedule's "now" to the first permit (negative: already due)."""
    sent: float
    answered: float
    """Moments on the bucket's clock (time.monotonic) just before the booking statement went out and just after
    its answer came: the schedule's "now" lies between them. Time spent queueing for the connection before the
    statement is not part of it, so it does not widen the window."""


class Limiter(Protocol):
    """What an adapter needs of a token's rate limit."""

    async def acquire(self) -> None:
        """Return when one request may be sent."""

    def penalize(self, seconds: float) -> None:
        """The provider said "too many requests": hold every user of the token for `seconds`."""


LimiterFactory = Callable[[str, float, int], Limiter]
"""Makes the limiter of one token from (key, rate, burst); the key is the token's SHA-256, never the token."""


class TokenBucket:
    """An async token bucket: `await acquire()` returns when a request may be sent; `burst` requests at once,
    then one every 1/rate seconds.

    It keeps a schedule rather than a count (GCRA): permits are moments 1/rate apart, and each caller, first
    come first served, is given the next one (or, when the token has been idle, a moment up to the burst's
    worth in the past, so that it goes at once). A caller that the event loop wakes a little late therefore
    does not push the ones after it back: its lateness up to `tolerance` (default half an interval, and at
    least 10 ms) is made up by the next caller, and only the excess is lost. A count-based bucket with a burst
    of 1 loses every late wake-up, and on a busy loop (the dispatcher committing chunks while it waits) that
    cost MAX's 600-chat fan-out 3-15 % of its pace. Bound: every request starts at or after its permit, at most
    max(tolerance, (burst - 1)/rate) after it, and permits are 1/rate apart, so in any one second at most
    ⌈rate x (1 + max(tolerance, (burst - 1)/rate))⌉ requests start: 29 at MAX's one-process default of 28 per
    second (30 allowed), 19 at VK's 18 (20 allowed); the one left over is for the way to the provider's clock.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        tolerance: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1 or (tolerance is not None and tolerance < 0):
            raise ValueError("rate must be positive, burst at least 1 and tolerance not negative")
        self.rate = rate
        self.burst = burst
        self.tolerance = max(0.5 / rate, MIN_TOLERANCE) if tolerance is None else tolerance
        self._clock = clock
        self._sleep = sleep
        self._slack = (burst - 1) / rate  # how far behind the clock an idle token's schedule may start
        self._next = clock() - self._slack  # the next permit's moment
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                permit = max(self._next, now - self._slack)
                if permit > now + _EPSILON:  # float rounding must not leave a caller 1e-17 s short
                    await self._sleep(permit - now)
                    now = self._clock()
                    if now < self._paused_until:
                        continue  # penalized meanwhile: the permit is void
                    permit = max(permit, now - self.tolerance)  # woken late: beyond the tolerance it is lost
                self._next = permit + 1 / self.rate
                return

    def penalize(self, seconds: float) -> None:
        """Hold every caller for `seconds` (after a 429 / error 6) and drop the saved-up burst."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._next = self._paused_until + 1 / self.rate  # the pause is not refill time: no burst right after it


class ReservingBucket:
    """A token's limiter whose schedule is kept outside the process and shared by several processes.

    `reserve(n)` books the next n permits of the shared schedule in one round trip and answers a `Reservation`:
    when the first of them is, in seconds from the schedule's "now" (negative: already due), and the moments
    the statement went out and its answer came; the n permits follow 1/rate apart. The bucket paces its
    callers through them, first come first served. It books only when the permits it has are used up, and
    only as many as callers are waiting (at most `batch`, by default a quarter second's worth), so an idle
    process books nothing and a busy one holds at most `batch` permits ahead: processes sharing the token take
    turns a batch at a time.

    Timing. The schedule's "now" lies somewhere within the statement's round trip, so a permit's moment is known
    only within it: the bucket sends at the latest possible moment, and only while that is within `tolerance`
    (default half an interval, 1/(2 rate), and at least 10 ms) of the earliest possible one. A permit whose
    caller wakes up later than that (the event loop was busy, the round trip was slow) is void and another is
    booked: a late request would crowd the next one. So every request starts within `tolerance` after its
    permit's true moment, and in any one second at most ⌊rate x (1 + tolerance)⌋ + 1 of them start: 27 at
    26 per second (MAX's default when processes share a token; 30 allowed), 19 at VK's 18 (20 allowed),
    whatever the number of processes. The rest of the headroom is for the way from a permit to the provider's
    clock (a process descheduled after its permit, a connection opened, the network): requests that leave on
    time can still arrive bunched, and the provider counts arrivals. With up to D seconds of such delay, at
    most ⌊rate x (1 + tolerance + D)⌋ + 1 arrive within one second: under MAX's 30 while D < 134 ms at 26 per
    second (at 28, the one-process default, only while D < 53 ms), under VK's 20 while D < 83 ms. Void
    permits cost throughput, never the limit, and they never run the schedule ahead: after a booking whose
    round trip was too slow to place it, the bucket books again only once the void run's moments have passed,
    so the schedule's "next free" cannot move on faster than the clock (booking again at once would push it a
    batch on per round trip; with a busy event loop the schedules ran minutes ahead and nothing was sent).
    (tests/test_workers.py once met a 429 at 28 per second: the MAX emulator then ran in the test's own
    process, whose pauses bunched the arrivals it counted; it now runs in a process of its own.)

    `penalize` holds this process's callers at once and, through `hold(seconds)`, every process's next
    reservation (permits another process booked before stay booked: at most one batch). When the schedule
    cannot be reached, `acquire` raises `TransientError`: no permit, no request; the dispatcher retries later.
    """

    def __init__(
        self,
        rate: float,
        reserve: Callable[[int], Awaitable[Reservation]],
        hold: Callable[[float], Awaitable[None]],
        *,
        batch: int | None = None,
        tolerance: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0 or (batch is not None and batch < 1) or (tolerance is not None and tolerance <= 0):
            raise ValueError("rate and tolerance must be positive and batch at least 1")
        self.rate = rate
        self.batch = batch or max(1, int(rate / 4))
        self.tolerance = tolerance or max(0.5 / rate, MIN_TOLERANCE)
        self.reservations = 0  # round trips to the shared schedule so far
        self.voided = 0  # permits booked but not used (too late, or a round trip too slow to place them)
        self._reserve = reserve
        self._hold = hold
        self._clock = clock
        self._sleep = sleep
        self._permits: deque[tuple[float, float]] = deque()  # (earliest, latest) moment on `clock`, not yet used
        self._waiting = 0
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self._void_until = 0.0  # no booking before the void run booked last has passed
        self._holds: set[asyncio.Task[None]] = set()

    async def acquire(self) -> None:
        self._waiting += 1
        queued = True
        try:
            async with self._lock:  # first come, first served
                self._waiting -= 1
                queued = False
                await self._take()
        finally:
            if queued:
                self._waiting -= 1

    async def _take(self) -> None:
        while True:
            now = self._clock()
            if now < self._paused_until:
                await self._sleep(self._paused_until - now)
                continue
            while self._permits and now > self._permits[0][0] + self.tolerance:
                self._permits.popleft()  # too late to use
                self.voided += 1
            if not self._permits:
                if now < self._void_until:
                    await self._sleep(self._void_until - now)
                    continue
                await self._book()
                continue
            earliest, latest = self._permits.popleft()
            if latest > now:
                await self._sleep(latest - now)
                now = self._clock()
                if now < self._paused_until:
                    continue  # penalized meanwhile: the permit is void
                if now > earliest + self.tolerance:
                    self.voided += 1
                    continue  # woken too late
            return

    async def _book(self) -> None:
        if self._holds:  # a pause this process asked for is in the schedule before we book after it
            await asyncio.gather(*self._holds, return_exceptions=True)
        count = min(self.batch, 1 + self._waiting)
        try:
            start, sent, answered = await self._reserve(count)
        except Exception as exc:
            log.warning("rate limit: the shared schedule is unreachable (%s)", type(exc).__name__)
            raise TransientError(
                "Общий счётчик запросов к провайдеру недоступен (нет связи с базой данных); отправка повторится",
                code="ratelimit:unavailable",
                retry_after=5.0,
            ) from exc
        self.reservations += 1
        if answered - sent > self.tolerance:  # the schedule's "now" is too uncertain to place these permits
            self.voided += count
            self._void_until = answered + start + count / self.rate
            log.info("rate limit: a reservation took %.0f ms; its %d permits are void", 1000 * (answered - sent), count)
            return
        for i in range(count):
            offset = max(0.0, start + i / self.rate)
            self._permits.append((sent + offset, answered + offset))

    def penalize(self, seconds: float) -> None:
        """Hold every caller here for `seconds` at once, and every other process from its next reservation."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)
        self._permits.clear()
        task = asyncio.get_running_loop().create_task(self._hold_everyone(seconds))
        self._holds.add(task)
        task.add_done_callback(self._holds.discard)

    async def _hold_everyone(self, seconds: float) -> None:
        try:
            await self._hold(seconds)
        except Exception as exc:  # the local pause still holds; other processes meet the provider's 429 themselves
            log.warning("rate limit: could not share a pause of %.1f s (%s)", seconds, type(exc).__name__)


def _token_bucket(key: str, rate: float, burst: int) -> Limiter:
    return TokenBucket(rate, burst)


class RateLimiters:
    """The limiters of one process, one per credential; the composition root makes one and hands it to every
    adapter. `factory` makes a token's limiter (default: an in-process `TokenBucket`). Keys are hashed, so that
    no token is kept as a dict key or handed to the factory."""

    def __init__(self, factory: LimiterFactory | None = None) -> None:
        self._factory = factory or _token_bucket
        self._buckets: dict[str, Limiter] = {}

    def for_token(self, token: str, rate: float, burst: int = 1) -> Limiter:
        key = hashlib.sha256(token.encode()).hexdigest()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = self._factory(key, rate, burst)
        return bucket
