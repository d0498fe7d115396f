"""Benchmark: one announcement to 600 MAX chats on one bot token, through the whole gateway.

A generated school (300 classes, each with a MAX parents' and a MAX students' chat) is loaded with
`load_config`; a deputy posts one announcement to the whole school, parents and students. It then goes the
production way: policy → planner → one SQLite transaction (the outbox) → `Dispatcher.run_once` (claim under a
lease, chunks, commit per chunk) → `MaxChannel` (per-token bucket) → the MAX emulator over real HTTP on
127.0.0.1, which enforces MAX's 30 requests/s per token (sliding one-second window) and answers 429 above it.

The floor is the provider's limit: 600 requests / 30 rps = 20 s. The time measured runs from just before
`post()` to the moment the store shows every delivery final; the target is achieved/floor ≤ 1.10. Each run
also reports where the time went (post → first request, first → last request, last request → final), the pace
of the requests as the emulator saw them, the largest pause between two requests, the most requests in any
one-second window, the emulator's 429 count and request count, and whether every chat got exactly one message.

Settings measured: the gateway's default (`max.rate` of `zvonok.yaml` unset: 28 rps, with the adapter's burst
of 1), three times for a median; `max.rate: 29` once, a faster setting closer to the limit; and the earlier
default, 25 rps with a burst of 3 (a channel built here, since the burst is not configurable), for comparison.
`--explore` adds rate 28 with burst 2, the dispatcher's default batch_size (200) and one chunk of 600, to show
what bounds the time.

Results go to bench/results/max_fanout.json. Usage: `python bench/max_fanout.py [--reps 3] [--explore]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from adapters.emulators.max import MaxEmulator
from adapters.max import DEFAULT_BURST, MaxChannel
from gateway.app import Gateway, build_channels
from gateway.config import Config, DispatchSettings, Settings, load_config
from gateway.dispatcher import Dispatcher
from gateway.domain import FINAL_STATUSES, AnnouncementRequest, Audience, Group, Kind, Status

TOKEN = "bench-max-token-school"
SCHOOL_ID = "bench"
MAX_RPS = 30
TARGET_RATIO = 1.10
BATCH_SIZE = 600  # one claim takes the whole announcement: 600 at 25 rps is 24 s, well inside the 120 s lease
ZONE = ZoneInfo("Europe/Moscow")
SCHOOL_DAY = datetime(2026, 10, 13, 10, 0, tzinfo=ZONE)  # a Tuesday in term time, inside the 08:00–19:00 window
LETTERS = "АБВГДЕЖЗИКЛМНОПРСТУФХЦЧШЩЭЮЯ"  # 28 letters x 11 parallels = 308 class names
RESULTS = Path(__file__).resolve().parent / "results" / "max_fanout.json"

TEXT = (
    "Уважаемые родители и ученики! В связи с плановыми работами на теплотрассе 14 ноября занятия в 1–11 "
    "классах начинаются в 10:00. Первый урок переносится на седьмой, расписание остальных уроков сохраняется. "
    "Группа продлённого дня работает в обычном режиме. По вопросам обращайтесь к классному руководителю."
)


class SchoolDayClock:
    """Real time at real speed, shifted to a school-day morning in the school's zone, so that the messaging
    window and the calendar never depend on when the benchmark is run."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


@dataclass(frozen=True)
class Variant:
    name: str
    rate: float | None = None  # `max.rate` written to zvonok.yaml; None leaves the gateway's default
    burst: int | None = None  # None: the adapter's default (the gateway passes none); else a channel built here
    chunk: int | None = None  # None: the dispatcher's default chunk size for MAX
    batch_size: int = BATCH_SIZE
    reps: int = 1


def class_names(count: int) -> list[str]:
    names = [f"{parallel}{letter}" for parallel in range(1, 12) for letter in LETTERS]
    if count > len(names):
        raise SystemExit(f"at most {len(names)} classes")
    return names[:count]


def chat_id(index: int, kind: str) -> int:
    return -(72_000_000_000_000 + 2 * index + (1 if kind == "parents" else 2))


def write_config(root: Path, classes: int, variant: Variant) -> None:
    settings: dict[str, Any] = {
        "database": "sqlite:///zvonok.db",  # replaced by a file in the run's temporary folder
        "max": {"base_url": "http://127.0.0.1:9"},  # replaced by the emulator's address
        "dispatch": {"batch_size": variant.batch_size},
    }
    if variant.rate is not None:
        settings["max"]["rate"] = variant.rate
    school = {
        "id": SCHOOL_ID,
        "name": "МБОУ «Средняя школа № 600» (нагрузочный тест)",
        "timezone": str(ZONE),
        "window": "08:00-19:00",
        "max": {"token": TOKEN},
        "staff": [{"id": "zavuch", "name": "Соколов Андрей Викторович", "role": "deputy"}],
        "classes": [
            {
                "name": name,
                "chats": {
                    "parents": {"channel": "max", "chat_id": chat_id(i, "parents")},
                    "students": {"channel": "max", "chat_id": chat_id(i, "students")},
                },
            }
            for i, name in enumerate(class_names(classes))
        ],
    }
    (root / "schools").mkdir(parents=True)
    (root / "zvonok.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    (root / "schools" / f"{SCHOOL_ID}.yaml").write_text(
        yaml.safe_dump(school, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )


def announcement() -> AnnouncementRequest:
    return AnnouncementRequest(
        school_id=SCHOOL_ID,
        author="zavuch",
        kind=Kind.SCHEDULE_CHANGE,
        title="Начало занятий 14 ноября",
        text=TEXT,
        audience=Audience(frozenset({Group.PARENTS, Group.STUDENTS})),
        idempotency_key="bench-max-fanout",
    )


async def open_gateway(config: Config, variant: Variant, clock: SchoolDayClock) -> Gateway:
    """The gateway as `Gateway.open` builds it, except for what the variant overrides."""
    channels = None
    settings = config.settings
    if variant.burst is not None:
        channels = build_channels(config, clock=clock)
        await channels["max"].aclose()
        channels["max"] = MaxChannel(
            config.tokens["max"],
            base_url=settings.max.base_url,
            rate=settings.max.rate,
            burst=variant.burst,
            timeout=settings.max.timeout,
        )
    gateway = await Gateway.open(config, clock=clock, channels=channels)
    if variant.chunk is not None:
        gateway.dispatcher = Dispatcher(
            gateway.store,
            gateway.channels,
            gateway.render,
            gateway.clock,
            settings.dispatch,
            chunk_sizes={"max": variant.chunk},
        )
    return gateway


async def one_run(variant: Variant, classes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zvonok-bench-max-") as tmp:
        folder = Path(tmp)
        write_config(folder / "config", classes, variant)
        config = load_config(folder / "config")
        school = config.school(SCHOOL_ID)
        async with MaxEmulator(rate_limit=MAX_RPS) as emu:
            emu.add_bot(TOKEN, "Бот школы № 600")
            chats = [int(c.address) for c in school.chats() if c.channel == "max"]
            for cid in chats:
                emu.add_chat(cid, f"Чат {cid}", token=TOKEN)
            s = config.settings
            config = replace(
                config,
                settings=replace(
                    s, database=f"sqlite:///{folder / 'zvonok.db'}", max=replace(s.max, base_url=emu.base_url)
                ),
            )
            clock = SchoolDayClock(SCHOOL_DAY)
            gateway = await open_gateway(config, variant, clock)
            try:
                wall_start = time.time()
                started = time.perf_counter()
                posted = await gateway.post(announcement())
                posted_after = time.perf_counter() - started
                rounds = 0
                while True:
                    await gateway.dispatcher.run_once()
                    rounds += 1
                    counts = await gateway.store.progress(posted.id)
                    if all(status in FINAL_STATUSES for status in counts):
                        break
                    if time.perf_counter() - started > 600:
                        raise RuntimeError(f"not final after 600 s: {counts}")
                    due = await gateway.store.next_due()  # a 429 that outlived the in-call retries waits here
                    pause = 0.05 if due is None else (due - clock.now()).total_seconds()
                    await asyncio.sleep(min(max(pause, 0.01), 5.0))
                elapsed = time.perf_counter() - started
                rows = await gateway.store.deliveries(posted.id)
                rate = gateway.config.settings.max.rate
                chunk = gateway.dispatcher.chunk_sizes["max"]
            finally:
                await gateway.close()
            stamps = sorted(m.timestamp / 1000 - wall_start for cid in chats for m in emu.messages(cid))
            per_chat = [len(emu.messages(cid)) for cid in chats]
            requests = emu.request_count(TOKEN)
            limited = emu.rate_limited_count(TOKEN)

    delivered = sum(r.status is Status.DELIVERED for r in rows)
    gaps = [(b - a, i + 1) for i, (a, b) in enumerate(itertools.pairwise(stamps))]
    widest, after = max(gaps) if gaps else (0.0, 0)
    burst = variant.burst if variant.burst is not None else DEFAULT_BURST
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {
        "seconds": round(elapsed, 3),
        "deliveries": len(rows),
        "delivered": delivered,
        "deliveries_per_second": round(delivered / elapsed, 2),
        "dispatch_rounds": rounds,
        "http_requests": requests,
        "rate_limited_429": limited,
        "messages_stored": sum(per_chat),
        "exactly_once": len(rows) == len(chats) and all(n == 1 for n in per_chat),
        "attempts_max": max((r.attempts for r in rows), default=0),
        "setting": {"rate": rate, "burst": burst, "batch_size": variant.batch_size, "max_chunk": chunk},
        "breakdown": {
            "post_seconds": round(posted_after, 3),
            "first_request_seconds": round(stamps[0], 3) if stamps else None,
            "request_span_seconds": round(span, 3),
            "last_request_to_final_seconds": round(elapsed - stamps[-1], 3) if stamps else None,
            "request_pace_rps": round((len(stamps) - 1) / span, 2) if span else None,
            "bucket_ideal_span_seconds": round((len(chats) - burst) / rate, 3),
            "widest_gap_seconds": round(widest, 3),
            "widest_gap_after_request": after,
            "most_requests_in_one_second": max_in_window(stamps, 1.0),
        },
    }


def max_in_window(stamps: list[float], window: float) -> int:
    """The most arrivals in any half-open window [t, t + window) (the emulator's stamps are in milliseconds)."""
    best = start = 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


async def measure(variant: Variant, classes: int, floor: float) -> dict[str, Any]:
    runs = []
    for _ in range(variant.reps):
        runs.append(await one_run(variant, classes))
        await asyncio.sleep(0.2)
    median = statistics.median(r["seconds"] for r in runs)
    chats = runs[0]["deliveries"]
    return {
        "variant": variant.name,
        "setting": runs[0]["setting"],
        "runs": runs,
        "median_seconds": round(median, 3),
        "ratio": round(median / floor, 3),
        "target_met": median / floor <= TARGET_RATIO,
        "deliveries_per_second": round(chats / median, 2),
        "rate_limited_429": sum(r["rate_limited_429"] for r in runs),
        "http_requests_per_run": [r["http_requests"] for r in runs],
        "exactly_once": all(r["exactly_once"] for r in runs),
        "requests_equal_chats": all(r["http_requests"] == chats for r in runs),
    }


def variants(reps: int, explore: bool) -> list[Variant]:
    default_rate = Settings().max.rate
    out = [Variant(f"default (max.rate unset = {default_rate:g}, burst {DEFAULT_BURST})", reps=reps)]
    out.append(Variant(f"max.rate: 29, burst {DEFAULT_BURST} (closer to the limit)", rate=29))
    out.append(Variant("max.rate: 25, burst 3 (the earlier default)", rate=25, burst=3))
    if explore:
        out += [
            Variant("max.rate: 28, burst 2", rate=28, burst=2),
            Variant(f"default rate, burst {DEFAULT_BURST}, batch_size 200 (the default)", batch_size=200),
            Variant(f"default rate, burst {DEFAULT_BURST}, MAX chunk 600", chunk=600),
        ]
    return out


async def main(classes: int, reps: int, explore: bool) -> dict[str, Any]:
    began = time.perf_counter()
    chats = 2 * classes
    floor = chats / MAX_RPS
    measured = [await measure(v, classes, floor) for v in variants(reps, explore)]
    default = measured[0]
    return {
        "benchmark": "max_fanout",
        "command": "python bench/max_fanout.py"
        + (f" --reps {reps}" if reps != 3 else "")
        + (" --explore" if explore else ""),
        "path": "post → planner → SQLite outbox → Dispatcher.run_once → MaxChannel → MAX emulator over HTTP",
        "chats": chats,
        "classes": classes,
        "tokens": 1,
        "emulator_rate_limit_rps": MAX_RPS,
        "floor": {"description": f"{chats} requests at {MAX_RPS} rps on one token", "seconds": floor},
        "target_ratio": TARGET_RATIO,
        "default_setting": default["variant"],
        "median_seconds": default["median_seconds"],
        "ratio": default["ratio"],
        "target_met": default["target_met"],
        "deliveries_per_second": default["deliveries_per_second"],
        "rate_limited_429": default["rate_limited_429"],
        "http_requests_per_run": default["http_requests_per_run"],
        "exactly_once": default["exactly_once"],
        "requests_equal_chats": default["requests_equal_chats"],
        "default_bucket_bound": {
            "description": "(chats - burst) / rate: the time the token bucket alone allows at the default setting",
            "seconds": round((chats - DEFAULT_BURST) / Settings().max.rate, 3),
            "ratio": round((chats - DEFAULT_BURST) / Settings().max.rate / floor, 3),
        },
        "settings": measured,
        "dispatch_defaults": {"batch_size": DispatchSettings().batch_size, "lease_seconds": 120.0},
        "runtime_seconds": round(time.perf_counter() - began, 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
    }


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"MAX fan-out through the gateway: {result['chats']} chats, one token, emulator at"
        f" {result['emulator_rate_limit_rps']} rps; floor {result['floor']['seconds']:g} s,"
        f" target ≤ {result['target_ratio']:.2f}x"
    ]
    for m in result["settings"]:
        times = ", ".join(f"{r['seconds']:.2f}" for r in m["runs"])
        b = m["runs"][0]["breakdown"]
        lines.append(
            f"  {m['variant']}: median {m['median_seconds']:.2f} s (runs {times}) = {m['ratio']:.3f}x floor,"
            f" {m['deliveries_per_second']:.1f} deliveries/s, {m['rate_limited_429']} × 429,"
            f" requests {m['http_requests_per_run']}, one message per chat: {'yes' if m['exactly_once'] else 'NO'},"
            f" target {'met' if m['target_met'] else 'MISSED'}\n"
            f"      post {b['post_seconds']:.2f} s, first request at {b['first_request_seconds']:.2f} s,"
            f" requests over {b['request_span_seconds']:.2f} s at {b['request_pace_rps']:.2f} rps"
            f" (bucket alone: {b['bucket_ideal_span_seconds']:.2f} s), last request → final"
            f" {b['last_request_to_final_seconds']:.3f} s, widest gap {b['widest_gap_seconds']:.3f} s,"
            f" peak {b['most_requests_in_one_second']} requests in 1 s"
        )
    lines.append(f"  runtime {result['runtime_seconds']:.0f} s")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--classes", type=int, default=300, help="two MAX chats per class (default 300 → 600)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the default setting (median)")
    parser.add_argument("--explore", action="store_true", help="also burst / batch / chunk variants")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(main(args.classes, args.reps, args.explore))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(summary(result))
    print(f"  results: {args.out}")


if __name__ == "__main__":
    cli()
