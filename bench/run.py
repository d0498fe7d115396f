"""Run every benchmark, then write BENCHMARKS.md from their results: `./run bench` (or `python bench/run.py`).

Each benchmark is a script in this folder that writes `bench/results/<name>.json`; they run one after another
(never together: the machine has two cores and is shared). `--only NAME` runs some of them; `--render` only
rewrites BENCHMARKS.md from the results already there. Figures are medians of several runs where the script
says so, and ratios are always taken within one run of one script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPORT = HERE.parent / "BENCHMARKS.md"

# name -> (script arguments, how to summarise its JSON)
Renderer = Callable[[dict[str, Any]], list[str]]


def _seconds(runs: list[dict[str, Any]]) -> str:
    """The runs' times, as a table cell lists them."""
    return ", ".join(str(run["seconds"]) for run in runs)


def _vk(r: dict[str, Any]) -> list[str]:
    b, s, f = r["batched"], r["single"], r["floor"]
    return [
        f"An announcement to {r['chats']:,} VK chats on one community token; the emulator enforces "
        f"{r['emulator_rate_limit_rps']} requests/s per token (error 6 above it).",
        "",
        "| mode | messages | seconds | messages/s | requests | error 6 |",
        "|---|---|---|---|---|---|",
        f"| `execute` batches of 25 | {b['messages']:,} | {b['seconds']} | {b['messages_per_second']} "
        f"| {b['http_requests']} | {b['error_6_answers']} |",
        f"| one `messages.send` per message | {s['messages']:,} | {s['seconds']} | {s['messages_per_second']} "
        f"| {s['http_requests']} | {s['error_6_answers']} |",
        f"| floor: single calls at the limit | {r['chats']:,} | {f['seconds']} | {f['messages_per_second']} | | |",
        "",
        f"Batched is **{r['batched_speedup_vs_floor']}×** the single-call floor (target ≥ 10×: "
        f"{'met' if r['target_met'] else 'missed'}); every chat got exactly one message: "
        f"{r['each_batched_chat_got_exactly_one']}.",
    ]


def _max(r: dict[str, Any]) -> list[str]:
    lines = [
        f"An announcement to {r['chats']} MAX chats on one bot token through the whole gateway (planner, SQLite "
        f"outbox, dispatcher, adapter, emulator over HTTP); the emulator allows {r['emulator_rate_limit_rps']} "
        f"requests/s per token. Floor: {r['floor']['seconds']} s.",
        "",
        "| setting | runs (s) | median (s) | × floor | 429s | requests |",
        "|---|---|---|---|---|---|",
    ]
    for v in r["settings"]:
        runs = v.get("runs", [])
        seconds = _seconds(runs)
        refused = sum(run.get("rate_limited_429", 0) for run in runs)
        requests = ", ".join(str(run.get("http_requests")) for run in runs)
        lines.append(
            f"| {v['variant']} | {seconds} | {v.get('median_seconds')} | {v.get('ratio')} | {refused} | {requests} |"
        )
    lines += [
        "",
        f"Default: **{r['ratio']}×** the floor "
        f"(target ≤ {r['target_ratio']}: {'met' if r['target_met'] else 'missed'}); "
        f"{r['deliveries_per_second']} deliveries/s; every chat exactly once: {r['exactly_once']}.",
    ]
    default = r["settings"][0]["runs"]
    bound = r.get("default_bucket_bound")
    if default and bound:
        paces = ", ".join(f"{run['breakdown']['request_pace_rps']}" for run in default)
        starts = ", ".join(f"{run['breakdown']['first_request_seconds']}" for run in default)
        lines += [
            "",
            f"What bounds it: the rate the gateway keeps under MAX's limit. The bucket alone allows "
            f"{bound['seconds']} s ({bound['ratio']}× the floor); the default runs' requests went out at {paces} "
            f"requests/s, the first one {starts} s after the post began (planning, the commit, the first claim). The "
            "bucket keeps a schedule, so a late wake-up of the busy event loop is made up by the next request "
            "(adapters/ratelimit.py); before it did (2026-11-22), the requests went out at 24-27 per second.",
        ]
    return lines


def _store(r: dict[str, Any]) -> list[str]:
    p = r["plan"]
    return [
        f"Committing one region-size plan in one transaction: {p['deliveries']:,} deliveries "
        f"({p['email_deliveries']:,} e-mails) and {p['coverage_rows']:,} coverage rows.",
        "",
        "| backend | runs (s) | median (s) |",
        "|---|---|---|",
        f"| SQLite {r['sqlite']['version']} (synchronous={r['sqlite']['synchronous']}) | "
        f"{', '.join(str(x) for x in r['sqlite']['runs_seconds'])} | {r['sqlite']['median_seconds']} |",
        f"| PostgreSQL {r['postgresql']['server_version'].split()[0]} | "
        f"{', '.join(str(x) for x in r['postgresql']['runs_seconds'])} | {r['postgresql']['median_seconds']} |",
    ]


def _workers(r: dict[str, Any]) -> list[str]:
    w = r["workload"]
    lines = [
        f"{w['deliveries']:,} deliveries ({w['max_chats']:,} MAX chats, {w['vk_chats']:,} VK chats, {w['letters']:,} "
        f"letters, {w['tokens']} tokens) by `zvonok worker` processes against emulators with their limits raised so "
        f"that providers do not bound it ({r['settings']['dispatch']}).",
        "",
        "| backend | worker processes | runs (s) | median (s) | deliveries/s | all delivered once |",
        "|---|---|---|---|---|---|",
    ]
    for x in r["results"]:
        runs = _seconds(x["runs"])
        lines.append(
            f"| {x['backend']} | {x['workers']} | {runs} | {x['median_seconds']} | {x['median_deliveries_per_s']} "
            f"| {x['all_delivered_once']} |"
        )
    pg = {x["workers"]: x["median_seconds"] for x in r["results"] if x["backend"] == "postgresql"}
    best = min(pg, key=lambda n: pg[n])
    lines += [
        "",
        f"The machine has {r['machine']['cpu_count']} cores, shared by the workers, the emulators and PostgreSQL, "
        f"and one worker keeps about one core busy: on PostgreSQL {best} worker process(es) did best here; beyond "
        "that the processes compete for the cores (the cores run out, not the store).",
    ]
    return lines


def _region(r: dict[str, Any]) -> list[str]:
    g, t = r["region"], r["targets"]
    lines = [
        f"A generated region of {g['schools']} schools x {g['classes']} classes (a MAX parents' and students' chat "
        f"per class, a bot per school, {g['students']} students per class, 1-2 guardians each, 15-30 % of them not "
        "in the chats); one `zvonok worker` on SQLite; the MAX emulator enforces 30 requests/s per token. "
        f"Medians of {r['reps']} runs; the floors were measured in the same runs (see the script).",
        "",
        "| scenario | deliveries | seconds (runs) | median | deliveries/s | rate-limit floor | ratio | raw-client "
        "floor | ratio | peak RSS | all once |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["scenarios"]:
        runs = _seconds(x["runs"])
        lines.append(
            f"| {x['scenario']} | {x['runs'][0]['deliveries']:,} | {runs} | {x['median_seconds']} "
            f"| {x['median_deliveries_per_s']} | {x['rate_floor_seconds']} s | {x['ratio_to_rate_floor']} "
            f"| {x['raw_floor_seconds']} s | {x['ratio_to_raw_floor']} | {x['peak_rss_mb']} MB "
            f"| {x['all_delivered_once']} |"
        )
    a, b = r["scenarios"][0], r["scenarios"][-1]
    lines += [
        "",
        f"Targets: (a) ≤ {t['a_ratio_to_rate_floor']} x the rate-limit floor: "
        f"{'met' if a['ratio_to_rate_floor'] <= t['a_ratio_to_rate_floor'] else 'missed'}; "
        f"(b) ≤ {t['b_ratio_to_raw_floor']} x the raw floor: "
        f"{'met' if b['ratio_to_raw_floor'] <= t['b_ratio_to_raw_floor'] else 'missed'}, "
        f"≥ {t['b_deliveries_per_s']:,} deliveries/s: "
        f"{'met' if b['median_deliveries_per_s'] >= t['b_deliveries_per_s'] else 'missed'}, "
        f"peak RSS ≤ {t['b_peak_rss_mb']} MB: {'met' if b['peak_rss_mb'] <= t['b_peak_rss_mb'] else 'missed'}.",
        "",
        f"What bounds them: in (b) {b['runs'][0]['letters'] / b['runs'][0]['deliveries']:.0%} of the deliveries "
        "are letters, and the gateway and the raw client alike wait on the SMTP server (aiosmtpd, pure Python, "
        "parsing every letter it accepts): the raw client, replaying the gateway's own letters with nothing else "
        f"to do, managed {b['runs'][0]['deliveries'] / b['raw_floor_seconds']:,.0f} deliveries/s, so 3,000 "
        "deliveries/s cannot be reached through this server by any client; what the gateway loses to the raw "
        "client is its own e-mail work (rendering, the outbox, recording every outcome: bench/email_fanout.py "
        "isolates it) and its posting: the region's announcements are posted inside the measured time (tens of ms "
        "of CPU each, on the same two cores), which the raw client does not do. Seen with top during a run "
        "(2026-11-22): the SMTP server's process at 80-100 % of a core throughout, the worker at 30-40 %. In (a) "
        f"the school's {a['rate_floor_seconds'] * 30:.0f} chats on one token take "
        f"{(a['rate_floor_seconds'] * 30 - 1) / 28:.2f} s at the gateway's 28 requests/s (0.93 of MAX's 30, the "
        "headroom that keeps it clear of 429s); posting, the worker's 0.1 s poll (SQLite has no NOTIFY) and the "
        "last commits add the rest.",
    ]
    return lines


def _plan_region(r: dict[str, Any]) -> list[str]:
    together = str(r["concurrency"])
    lines = [
        f"Every school of a generated region of {r['schools']} schools ({r['guardians']:,} guardians) posts the "
        "closure: the school's rules, the planner and one transaction per school committing the announcement, its "
        f"deliveries, coverage and gaps. The schools post at the same moment, {together} posts in flight at a time "
        "(as a served gateway takes several schools' requests at once); one at a time is measured too. Peak memory "
        "is the posting process's VmHWM, reset after the rosters' import; the increase is over the process just "
        "before the first post.",
        "",
        "| backend | posts at a time | deliveries | runs (s) | median (s) | target | peak RSS (MB) | increase (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        for mode, x in sorted(r[name].items(), key=lambda item: -int(item[0])):
            runs = _seconds(x["runs"])
            met = "met" if x["median_seconds"] <= r["target_seconds"] else "missed"
            target = f"≤ {r['target_seconds']} s: {met}" if mode == together else "(for comparison)"
            lines.append(
                f"| {label} | {mode} | {x['runs'][0]['deliveries']:,} | {runs} | {x['median_seconds']} | {target} | "
                f"{x['median_peak_rss_mb']} | {x['median_peak_increase_mb']} |"
            )
    store = RESULTS / "store_plan.json"
    alone = ""
    if store.exists():
        plan = json.loads(store.read_text(encoding="utf-8"))
        alone = (
            " bench/store_plan.py (its run is named above) commits a plan of about the same size "
            f"({plan['plan']['deliveries']:,} deliveries, {plan['plan']['coverage_rows']:,} coverage rows) in one "
            "single transaction, without any "
            f"planning or reading: {plan['sqlite']['median_seconds']} s on SQLite, "
            f"{plan['postgresql']['median_seconds']} s on PostgreSQL. That is the store's own cost of the rows, and "
            "the floor under this figure whatever is done above the store."
        )
    lines += [
        "",
        "What bounds it: every school's post is a transaction of its own, as it must be (a deputy's announcement "
        f"is durable when the answer comes), so the region pays {r['schools']} commits, each on disk before its "
        "answer. The rest is this process's work on two cores. On SQLite: a writer thread (a post's rows and its "
        "commit, mostly inside SQLite, without the interpreter lock), a reader thread (the rosters) and the event "
        "loop's thread (the rules, the planner, encoding the rows), the last two sharing the interpreter lock; on "
        "2026-11-22 at 23:10 (two runs) their CPU was 1.8-1.9, 1.2 and 1.3 s in 2.9 s. On PostgreSQL "
        "the server's COPY overlaps the posts in flight, and this process's main thread is busy for the whole run "
        "(roster rows into Python, planning, COPY encoding)." + alone,
        "",
        "Found and fixed on 2026-11-22, each change judged by runs alternating the old and the new code (the host's "
        "speed varies by half from hour to hour):",
        "",
        "- Every post read every school's chats (no index by school; migration 0009) and counted the whole region's "
        "e-mail queue (now read at most once a second, `gateway.estimate.Backlog`): both grew with the square of the "
        "schools.",
        "- PostgreSQL counted a school's queue from a generic plan made while the table was empty (10-12 ms a post, "
        "now 1 ms), checked each report line's two foreign keys by trigger (13 of the 22 ms of the server's COPY; "
        "migration 0010, the invariant kept by a contract test) and looked its id sequence up by name for every id "
        "(11.4 ms of a 26 ms statement; now once).",
        "- SQLite did every read on the store's one thread, behind the transactions queued before it. Reads now have "
        "a connection and a thread of their own (WAL); a post's rows are two JSON texts built before its "
        "transaction; the planner builds named tuples in order. 4 in flight: 4.53 and 5.38 s against 9.77 and 8.34 s.",
        "- Python's garbage collector walked the ~127,000 objects alive since start-up in each of its 9-10 full "
        "passes during a run: 0.57-0.73 s of 3.4-4.3 s, with the interpreter lock held. `zvonok serve` and `zvonok "
        "worker` now freeze those objects once set up (`gateway.app.freeze_startup_objects`; this benchmark does it "
        "after opening the gateway, as serve would): 3.18-4.00 s against 4.62-4.91 s.",
        "- SQLite's report lines lost their two foreign keys, and both backends the lines' index by delivery "
        "(migrations 0010 and 0011; every statement names the announcement): a post's 1,137 lines took 4.26 ms to "
        "insert instead of 5.43 ms.",
        "- Tried and not kept, no faster: a larger SQLite page cache, `WITHOUT ROWID` report lines, one commit for "
        "the posts queued together (it made them wait for each other), the rows as JSON instead of COPY on "
        "PostgreSQL (2 ms a post less here, more on the server), the roster as one `json_agg` on PostgreSQL (a "
        "nested loop without statistics right after an import).",
    ]
    return lines


def _generic(r: dict[str, Any]) -> list[str]:
    summary = r.get("summary")
    if isinstance(summary, list):
        return [str(line) for line in summary]
    return ["```json", json.dumps(r, ensure_ascii=False, indent=2)[:3000], "```"]


BENCHMARKS: dict[str, tuple[list[str], Renderer, str]] = {
    "max_fanout": ([], _max, "MAX: 600 chats on one token against the 30 rps limit"),
    "vk_fanout": ([], _vk, "VK: 2,000 chats on one community token, with and without `execute`"),
    "store_plan": ([], _store, "Store: committing a region-wide plan"),
    "plan_region": ([], _plan_region, "(c) Planning and committing a region's closure for 200,000 guardians"),
    "email_fanout": ([], _generic, "E-mail: 1,000 and 10,000 letters, the gateway vs Apprise vs a raw blast"),
    "workers": ([], _workers, "PostgreSQL: 1, 2 and 3 worker processes"),
    "region": ([], _region, "Region: one school's force majeure and a region's closure, against both floors"),
}


def cpu_speed() -> float:
    """Milliseconds of CPU for a fixed piece of pure-Python work, the best of five: how fast this machine ran
    Python at the time. The host is shared: on 2026-11-22 the same letters took 212 us each to render at 13:38
    and 356 us at 14:20, so absolute figures are to be read beside this one."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        total = 0
        for i in range(1_000_000):
            total += i * i % 7
        best = min(best, time.process_time() - started)
    return round(best * 1000, 1)


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks since boot (/proc/stat): the time a virtual machine's host gave to others is
    "steal", which slows everything here without showing as load."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return sum(fields[:8]), fields[7]


def run(names: list[str]) -> None:
    ticks = cpu_ticks()
    speed: dict[str, Any] = {"ran": names, "before_ms": cpu_speed()}
    try:
        for name in names:
            script = HERE / f"{name}.py"
            if not script.exists():
                print(f"-- {name}: no script, skipped", flush=True)
                continue
            args = BENCHMARKS[name][0]
            print(f"-- {name} ...", flush=True)
            started = time.monotonic()
            subprocess.run([sys.executable, str(script), *args], check=True, cwd=HERE.parent)  # noqa: S603
            print(f"-- {name}: {time.monotonic() - started:.0f} s", flush=True)
    finally:  # also when a benchmark fails: the figures it did write were made at this speed
        speed["after_ms"] = cpu_speed()
        now = cpu_ticks()
        speed["stolen_share"] = round((now[1] - ticks[1]) / max(1, now[0] - ticks[0]), 3)
        speed["date"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        # one record per run: a later run of some benchmarks replaces the records of those only
        path = RESULTS / "cpu_speed.json"
        kept = [r for r in _speed_records(path) if not set(r["ran"]) <= set(names)]
        for record in kept:
            record["ran"] = [name for name in record["ran"] if name not in names]
        path.write_text(json.dumps([*kept, speed], indent=1) + "\n", encoding="utf-8")


def _speed_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    found = json.loads(path.read_text(encoding="utf-8"))
    return found if isinstance(found, list) else [found]  # a single record, as written before 2026-11-22


def render() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Regenerate every figure with `./run bench` (runs `bench/run.py`: each benchmark in turn, results in",
        "`bench/results/*.json`, then this file). Medians are of the runs listed; ratios are taken within one run.",
        f"Machine: {os.cpu_count()} cores, {_memory()}, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}; shared with other work, so absolute times are noisy.",
        "",
    ]
    records = _speed_records(RESULTS / "cpu_speed.json")
    if records:
        runs = [
            f"{ms.get('date', 'earlier')} ({', '.join(ms['ran'])}): {ms['before_ms']} ms before and "
            f"{ms['after_ms']} ms after, with {ms['stolen_share']:.0%} of this machine's CPU time taken by the host "
            "for others while it ran (steal, /proc/stat)"
            for ms in records
        ]
        lines[-1:-1] = [
            "CPU speed at the `bench/run.py` runs these figures come from: a fixed pure-Python loop (`cpu_speed`, "
            f"best of 5) took {'; '.join(runs)}. The host is shared and the same code has run at half the speed in "
            "another hour of the same day: read absolute times beside these figures; ratios within one run are not "
            "affected.",
        ]
    for name, (_args, summarise, title) in BENCHMARKS.items():
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        stamp = time.strftime("%Y-%m-%d", time.gmtime(path.stat().st_mtime))
        lines += [f"## {title}", "", f"`bench/{name}.py`, results of {stamp}.", "", *summarise(result), ""]
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {REPORT}")


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(meminfo.readline().split()[1])
        return f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "memory unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--render", action="store_true", help="only rewrite BENCHMARKS.md from the results")
    args = parser.parse_args()
    if not args.render:
        run(args.only or list(BENCHMARKS))
    render()


if __name__ == "__main__":
    main()
