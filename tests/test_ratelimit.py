"""The per-token bucket: its pace, its burst, and what a provider's "too many requests" does to it.

The bucket takes its clock and its sleep from the test, so the timings below are exact, not measured.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.ratelimit import RateLimiters, TokenBucket


class FakeTime:
    """A clock and a sleep; `late` gives how much later than asked each sleep ends (a busy event loop)."""

    def __init__(self, late: Sequence[float] = ()) -> None:
        self.now = 0.0
        self.late = list(late)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + (self.late.pop(0) if self.late else 0.0)


def bucket(rate: float, burst: int, late: Sequence[float] = ()) -> tuple[TokenBucket, FakeTime]:
    clock = FakeTime(late)
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


async def grant_times(b: TokenBucket, clock: FakeTime, count: int) -> list[float]:
    times = []
    for _ in range(count):
        await b.acquire()
        times.append(round(clock.now, 6))
    return times


async def test_burst_then_steady_pace() -> None:
    b, clock = bucket(rate=10, burst=3)
    assert await grant_times(b, clock, 6) == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]


async def test_a_penalty_pauses_everyone_and_brings_no_burst_back() -> None:
    b, clock = bucket(rate=10, burst=3)
    await grant_times(b, clock, 3)
    clock.now = 0.5  # half a second of silence refills the burst ...
    b.penalize(1.0)  # ... but a 429 now empties it and holds the token until 1.5
    # After the pause the pace is the plain rate: no burst of 3 saved up during the pause.
    assert await grant_times(b, clock, 4) == [1.6, 1.7, 1.8, 1.9]


async def test_registry_shares_one_bucket_per_token() -> None:
    limiters = RateLimiters()
    assert limiters.for_token("secret-a", 30) is limiters.for_token("secret-a", 30)
    assert limiters.for_token("secret-a", 30) is not limiters.for_token("secret-b", 30)


async def test_late_wake_ups_within_the_tolerance_cost_no_pace() -> None:
    # rate 10: tolerance 50 ms. Every sleep ends 4 ms late, yet the permits stay 0.1 s apart on the schedule:
    # a bucket that counted from the moment it woke would give 0.104, 0.208, 0.312, ... and lose 4 % of the pace.
    b, clock = bucket(rate=10, burst=1, late=[0.004] * 10)
    assert await grant_times(b, clock, 5) == [0.0, 0.104, 0.204, 0.304, 0.404]


async def test_a_wake_up_later_than_the_tolerance_loses_only_the_excess() -> None:
    b, clock = bucket(rate=10, burst=1, late=[0.08, 0.0, 0.0])
    # 0.1 woken at 0.18: 0.03 beyond the tolerance is lost, so the next permits are at 0.23 and 0.33, and the
    # request after the late one comes 0.05 after it (1/rate - tolerance), never sooner.
    assert await grant_times(b, clock, 4) == [0.0, 0.18, 0.23, 0.33]


async def test_callers_waiting_together_go_in_order_one_interval_apart() -> None:
    b, clock = bucket(rate=20, burst=2)
    order: list[tuple[int, float]] = []

    async def caller(i: int) -> None:
        await b.acquire()
        order.append((i, round(clock.now, 6)))

    await asyncio.gather(*(caller(i) for i in range(5)))
    assert order == [(0, 0.0), (1, 0.0), (2, 0.05), (3, 0.1), (4, 0.15)]


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([10.0, 18.0, 28.0]),
    burst=st.integers(min_value=1, max_value=3),
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 0.004, 0.02, 0.07, 0.2]), st.sampled_from([0.0, 0.0, 0.0, 0.03, 0.5, 2.0])
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_no_second_ever_holds_more_requests_than_the_bound(
    rate: float, burst: int, steps: list[tuple[float, float]]
) -> None:
    """Whatever the lateness of the wake-ups and the idle gaps between callers, in any one-second window at most
    ⌈rate x (1 + max(tolerance, (burst - 1)/rate))⌉ permits are granted, and none before its time."""
    b, clock = bucket(rate, burst, late=[late for late, _ in steps])
    grants: list[float] = []

    async def run() -> None:
        for _, idle in steps:
            clock.now += idle
            await b.acquire()
            grants.append(clock.now)

    asyncio.run(run())
    bound = math.ceil(rate * (1 + max(b.tolerance, (burst - 1) / rate)) - 1e-9)
    start = 0
    for end, moment in enumerate(grants):
        while moment - grants[start] >= 1.0 - 1e-9:  # a moment summed from 1/rate steps may fall 1e-16 short
            start += 1
        assert end - start + 1 <= bound, (grants, end)
