"""The per-token bucket: its pace, its burst, and what a provider's "too many requests" does to it.

The bucket takes its clock and its sleep from the test, so the timings below are exact, not measured.
"""

from __future__ import annotations

from adapters.ratelimit import RateLimiters, TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def bucket(rate: float, burst: int) -> tuple[TokenBucket, FakeTime]:
    clock = FakeTime()
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
