"""`./run reliability`: the long reliability runs, then RELIABILITY.md from their results.

Five parts, one after another (never together: the machine has two cores and is shared), each writing
reliability/results/<name>.json:
- chaos: `python -m reliability.chaos` — SIGKILL the gateway at random moments during a large fan-out, on
  SQLite and on PostgreSQL (25 kills each by default), then count what every chat and mailbox received;
- load: `python -m reliability.load` — staff post 50 announcements a minute and read reports through the HTTP
  API while a region-wide fan-out runs: latency percentiles, failures, and whether everything is delivered;
- faults: `python -m reliability.faults` — one fault at a time during a school's fan-out: a worker paused past
  its lease, a worker's clock two hours ahead, a PostgreSQL restart, a full disk, the relay down, MAX chats
  flooded after unanswered sends; lost, duplicated and stuck counted against the roster;
- hostile: `python -m reliability.hostile` — login storms and a corpus of hostile requests against the staff site,
  on SQLite and on PostgreSQL: password checks per storm, statuses, server errors;
- tests: the fast reliability suites (SUITES below) with pytest, one file at a time (`--junitxml`).

`--only chaos load faults hostile tests` runs some of them; `--quick` makes chaos and load short (for
development: 5 kills on 4 schools, 30 s of load on 5 schools; RELIABILITY.md then says so); `--render` only
rewrites RELIABILITY.md from the results already there. Exit 1 when any part failed (RELIABILITY.md is written
all the same).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "reliability" / "results"
REPORT = ROOT / "RELIABILITY.md"

PARTS = ["chaos", "load", "faults", "hostile", "tests"]
QUICK = {
    "chaos": ["--kills", "5", "--schools", "4"],
    "load": ["--schools", "5", "--minutes", "0.5"],
}

# The fast suites: what each file proves (None: the first sentence of its own docstring).
SUITES: dict[str, str | None] = {
    "tests/test_faults.py": "provider outages end to end on a manual clock (5xx and timeouts for 60 s, a 502 proxy for "
    "10 min, 429 and error-6 storms, SMTP 4xx and greylisting, connections dropped around DATA, the bot removed "
    "mid-announcement, refused connections, names that do not resolve): the retryable delivered once afterwards, "
    "only the truly permanent fails, its parents e-mailed",
    "tests/test_clock.py": "clock jumps (backward around the opening, under a dead sender's leases and during a send; "
    "forward past 19:00, over a weekend, onto a holiday), the same UTC opening all year, a restart after being down "
    "over 08:00, a forward step past the lease while a send is on the wire: nothing sent twice, nothing lost",
    "tests/test_workers.py": "three `zvonok worker` processes on PostgreSQL deliver 5,000 while one is SIGKILLed: "
    "none lost, none duplicated in a chat, the providers' limits kept across processes",
    "tests/test_dispatch_email.py": "the e-mail pipeline end to end against a real SMTP server: post, outbox, "
    "dispatcher, SMTP, report",
    "tests/test_max_adapter.py": "MAX over real HTTP: error mapping, rate limits, reconciliation after a lost "
    "answer (no duplicate), health checks",
    "tests/test_vk_adapter.py": "VK over real HTTP: the error table, `random_id` dedup under faults, `execute` "
    "batching, rate limiting",
    "tests/test_properties.py": "bad input, generated (hypothesis): school files, roster exports and announcements "
    "are accepted or rejected with clear Russian problems, never a crash or a partial write",
    "tests/test_fencing.py": None,
    "tests/test_store_faults.py": None,
    "tests/test_clock_skew.py": None,
    "tests/test_hostile_input.py": None,
    "tests/test_login_throttle.py": None,
    "tests/test_web_proxy.py": None,
    "tests/test_web_schemathesis.py": "every API operation with generated bodies, parameters and headers "
    "(schemathesis): no server error, every JSON answer matches its schema",
}


def run_part(name: str, args: list[str], *, quick: bool) -> bool:
    print(f"-- {name} ...", flush=True)
    started = time.monotonic()
    if name == "tests":
        ok = run_suites()
    else:
        command = [sys.executable, "-m", f"reliability.{name}", *args]
        ok = subprocess.run(command, cwd=ROOT, check=False).returncode == 0  # noqa: S603 - our own module
    seconds = round(time.monotonic() - started)
    print(f"-- {name}: {seconds} s, {'ok' if ok else 'FAILED'}", flush=True)
    timings = _load("run") or {}
    timings[name] = {"seconds": seconds, "ok": ok, "args": args, "quick": quick}
    _save("run", timings)
    return ok


def run_suites() -> bool:
    """Each file with pytest on its own (a file that does not collect cannot hide the others), its junit XML read
    back: tests, passed, failed, skipped, time."""
    rows = []
    for path, description in SUITES.items():
        file = ROOT / path
        row: dict[str, Any] = {"file": path, "description": description or _first_sentence(file)}
        if not file.exists():
            rows.append({**row, "present": False})
            print(f"   {path}: not in the tree, skipped", flush=True)
            continue
        xml = RESULTS / f"junit-{file.stem}.xml"
        started = time.monotonic()
        command = [sys.executable, "-m", "pytest", path, "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
        env = {**os.environ, "ZVONOK_REQUIRE_POSTGRES": "1"}  # here a PostgreSQL test fails rather than skips
        code = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True).returncode  # noqa: S603
        row |= {"present": True, "exit_code": code, "wall_seconds": round(time.monotonic() - started, 1)}
        row |= _junit(xml)
        xml.unlink(missing_ok=True)
        rows.append(row)
        print(f"   {path}: {row['passed']}/{row['tests']} passed, {row['failed']} failed ({row['seconds']} s)")
    _save("suites", {"when": _now(), "files": rows})
    return all(r["exit_code"] == 0 for r in rows if r["present"])


def _junit(xml: Path) -> dict[str, Any]:
    if not xml.exists():
        return {"tests": 0, "passed": 0, "failed": 0, "skipped": 0, "seconds": 0.0}
    cases = ET.parse(xml).getroot().iter("testcase")  # noqa: S314
    counts = {"tests": 0, "passed": 0, "failed": 0, "skipped": 0}
    seconds = 0.0
    for case in cases:
        counts["tests"] += 1
        seconds += float(case.get("time", 0))
        tags = {child.tag for child in case}
        key = "failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"
        counts[key] += 1
    return {**counts, "seconds": round(seconds, 1)}


def _first_sentence(file: Path) -> str:
    if not file.exists():
        return "(not in the tree yet)"
    doc = ast.get_docstring(ast.parse(file.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    return text.split(". ")[0].rstrip(".")


# ---------------------------------------------------------------------------------------------- RELIABILITY.md


def render() -> None:
    chaos = [r for r in (_load("chaos_sqlite"), _load("chaos_postgresql")) if r]
    load = [r for r in (_load("load_sqlite"), _load("load_postgresql")) if r]
    hostile = [r for r in (_load("hostile_sqlite"), _load("hostile_postgresql")) if r]
    faults = _load("faults")
    suites = _load("suites")
    timings = _load("run") or {}
    stamps = [
        r["when"] for r in [*chaos, *load, *hostile, *([suites] if suites else []), *([faults] if faults else [])]
    ]
    machine = next((r["machine"] for r in [*chaos, *load]), None)
    lines = [
        "# Reliability",
        "",
        "What was tried against the gateway, how often, and what held: figures from the latest run of",
        "`./run reliability` (reliability/run.py; results in `reliability/results/*.json`, from which this file is",
        "written). Every figure comes from real processes, real HTTP, a real SMTP server and real SQLite and",
        "PostgreSQL stores; the MAX and VK providers are the project's protocol-faithful emulators.",
        "",
    ]
    if stamps:
        first, last = min(stamps), max(stamps)
        lines.append(f"Results of {first[:16].replace('T', ' ')} to {last[:16].replace('T', ' ')} (UTC{last[19:]}).")
    if machine:
        lines.append(
            f"Machine: {machine['cpu_count']} cores, {machine['memory_gib']} GiB, Python {machine['python']}, "
            f"PostgreSQL {machine['postgresql']}, {machine['platform']}; shared with other work, so times are noisy."
        )
    if timings:
        parts = ", ".join(f"{name} {t['seconds'] // 60} min {t['seconds'] % 60} s" for name, t in timings.items())
        lines.append(f"Time per part: {parts}.")
    if any(t.get("quick") for t in timings.values()):
        lines.append("")
        lines.append("**These figures are from a `--quick` run (a short one, for development), not the default.**")
    lines += ["", "## Summary", "", "| what was tried | how often | what held |", "|---|---|---|"]
    for r in chaos:
        got = r["received"]
        lines.append(
            f"| SIGKILL of the gateway during a fan-out, {_backend(r)} | {r['kills']} kills, {r['deliveries']:,} "
            f"deliveries | lost {_lost(r)}, duplicates in chats {got['max']['duplicates'] + got['vk']['duplicates']}, "
            f"e-mail duplicates {got['email']['duplicates']} (bound {r['email_duplicate_bound']}) |"
        )
    for r in load:
        calls = sum(v["count"] for v in r["latency"].values())
        post = r["latency"].get("POST /api/announcements (class or parallel)", {})
        drained = r["seconds"]["final_after_last_post"]
        ending = "**stalled**" if drained is None else f"final {drained} s after the last post"
        lines.append(
            f"| staff API during a region's fan-out, {'SQLite' if r['backend'] == 'sqlite' else 'PostgreSQL'}, one "
            f"`zvonok serve` | {calls:,} requests, {r['deliveries']:,} deliveries | failed requests "
            f"{len(r['failures'])}, POST p99 {post.get('p99_ms')} ms, all delivered {r['all_delivered']}, {ending} |"
        )
    for f in (faults or {}).get("scenarios", []):
        lines.append(
            f"| {FAULTS.get(f['scenario'], f['scenario'])} | {f['deliveries']:,} deliveries, {f['workers']} "
            f"worker{'s' if f['workers'] > 1 else ''} | lost {f['lost']}, duplicates in chats {f['chat_duplicates']}, "
            f"letter duplicates {f['letter_duplicates']}, stuck {f['stuck']} |"
        )
    for r in hostile:
        login, found = r["login"], r["input"]
        lines.append(
            f"| hostile input and login storms, {'SQLite' if r['backend'] == 'sqlite' else 'PostgreSQL'} | "
            f"{found['requests']} hostile requests, {login['parallel_wrong']} parallel wrong passwords, "
            f"{login['made_up_attempts']:,} made-up logins | server errors {found['server_errors']}, password checks "
            f"{login['password_checks']} of {login['parallel_wrong']}, the account's wait kept "
            f"{login['account_wait_kept']} |"
        )
    if suites:
        present = [f for f in suites["files"] if f["present"]]
        lines.append(
            f"| fast suites (provider faults, clock, workers, adapters, generated input) | "
            f"{sum(f['tests'] for f in present)} tests in {len(present)} files | passed "
            f"{sum(f['passed'] for f in present)}, failed {sum(f['failed'] for f in present)}, skipped "
            f"{sum(f['skipped'] for f in present)} |"
        )
    lines += ["", *_chaos_section(chaos), *_load_section(load), *_faults_section(faults)]
    lines += [*_hostile_section(hostile), *_suites_section(suites)]
    lines += _notes(chaos, load)
    lines += _reproduce()
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)}")


def _backend(r: dict[str, Any]) -> str:
    n = r["worker_processes"]
    return f"{'SQLite' if r['backend'] == 'sqlite' else 'PostgreSQL'}, {n} worker process{'es' if n > 1 else ''}"


def _lost(r: dict[str, Any]) -> int:
    got = r["received"]
    return int(got["max"]["missing"] + got["vk"]["missing"] + got["email"]["missing"])


def _chaos_section(results: list[dict[str, Any]]) -> list[str]:
    if not results:
        return []
    first = results[0]
    w = first["workload"]
    lines = [
        "## 1. Crashes: SIGKILL at random moments during a large fan-out",
        "",
        f"`reliability/chaos.py`. A generated region of {w['max_schools']} schools, each with its own MAX bot "
        f"({w['max_chats']:,} MAX chats), and {w['vk_schools']} VK schools ({w['vk_chats']} VK chats); "
        f"{w['mailboxes']:,} families are in no chat and get a letter. One wave is a whole-school force majeure in "
        f"every school: {w['deliveries_per_wave']:,} deliveries; a new wave is posted whenever the backlog runs low "
        "and kills are still to come, so the gateway always has work in flight when it dies. The gateway runs as "
        "real `zvonok worker` processes; every "
        f"{first['kill_interval_s'][0]}-{first['kill_interval_s'][1]} s (seeded RNG, seed {first['seed']}) one of "
        "them gets SIGKILL and is restarted at once. On SQLite there is one process (the next moment is counted "
        "from when the restarted one says it runs); on PostgreSQL three, the victim chosen at random. Leases are "
        f"{first['lease_seconds']:.0f} s. After the last kill the workers are left to finish, stopped with SIGTERM, "
        "and everything the emulated chats and the SMTP server received is counted against what each school must "
        "receive.",
        "",
        "| | " + " | ".join(_backend(r) for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]

    def row(label: str, value: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(str(value(r)) for r in results) + " |")

    row("SIGKILLs (processes started)", lambda r: f"{r['kills']} ({r['workers_started']})")
    row(
        "waves × deliveries", lambda r: f"{r['waves']} × {r['workload']['deliveries_per_wave']:,} = {r['deliveries']:,}"
    )
    row(
        "run time; final after the last kill",
        lambda r: f"{r['seconds']['total']} s; {r['seconds']['final_after_last_kill']} s",
    )
    row(
        "deliveries delivered (store)",
        lambda r: f"{r['store']['statuses'].get('delivered', 0):,} of {r['deliveries']:,}",
    )
    row(
        "claims that died with their process (MAX / VK / e-mail)",
        lambda r: " / ".join(str(r["store"]["claims_lost_to_kills"].get(c, 0)) for c in ("max", "vk", "email")),
    )
    row(
        "MAX: found already in the chat, not resent",
        lambda r: r["store"]["attempt_outcomes_after_a_lost_claim"].get("max:reconciled", 0),
    )
    for channel, label in (("max", "MAX"), ("vk", "VK")):
        row(
            f"{label} chats: messages / missing / duplicates",
            lambda r, c=channel: (
                f"{r['received'][c]['messages']:,} in {r['received'][c]['chats']:,} chats / "
                f"**{r['received'][c]['missing']}** / **{r['received'][c]['duplicates']}**"
            ),
        )
    row(
        "letters: received / missing",
        lambda r: f"{r['received']['email']['letters']:,} / **{r['received']['email']['missing']}**",
    )
    row(
        "e-mail duplicates (same Message-ID twice) / bound",
        lambda r: (
            f"**{r['received']['email']['duplicates']}** / {r['email_duplicate_bound']} "
            f"({r['received']['email']['duplicates'] / max(1, r['kills']):.1f} per kill)"
        ),
    )
    row(
        "provider refusals (MAX 429 / VK error 6)",
        lambda r: f"{r['rate_limited']['max_429']} / {r['rate_limited']['vk_error_6']}",
    )
    row(
        "workers that died by themselves; exit codes at SIGTERM",
        lambda r: f"{r['crashed_by_themselves']}; {sorted(set(r['final_exit_codes']))}",
    )
    row(
        "logs: tracebacks / unmasked e-mail addresses / tokens",
        lambda r: (
            f"{r['logs']['tracebacks']} / {r['logs']['unmasked_addresses']} / {r['logs']['secrets']} "
            f"({r['logs']['lines']:,} lines at -v)"
        ),
    )
    row("result", lambda r: "**held**" if r["ok"] else "**FAILED**")
    lines += [
        "",
        "What bounds the e-mail duplicates. A chat message is never sent twice: a MAX delivery whose sender died is "
        "looked up in the chat before any resend, and VK drops a repeated `random_id`. E-mail cannot be asked: a "
        "letter is sent again, with the same Message-ID, when its process died after the SMTP server accepted it and "
        "before the outcome was committed. Every such letter is therefore one of the e-mail claims that died with "
        "their process (the bound above, counted from the store: a claim counts an attempt, only a finished one is "
        "recorded). A process holds at most one e-mail batch at a time (`dispatch.batch_size`, "
        f"{first['batch_size']}; e-mail has one claimer per process), committed in chunks of 16 as each finishes, "
        f"so one kill can duplicate at most {first['batch_size']} letters. In practice far fewer: the SMTP pool (4 "
        "connections) serves the batch's chunks about in order, so roughly one chunk of letters is accepted and not "
        "yet committed at any moment, and a kill duplicates what of it had reached the server (the per-kill figure "
        "above). Target: zero; it is not met, by design. Mail clients that deduplicate by Message-ID show such a "
        "letter once; committing each letter's outcome as soon as the server accepts it (chunks of one) would cut "
        "it to a few letters per kill (about the pool's 4), at the cost of a commit per letter.",
        "",
    ]
    return lines


def _load_section(results: list[dict[str, Any]]) -> list[str]:
    if not results:
        return []
    w, p = results[0]["workload"], results[0]["plan"]
    lines = [
        "## 2. Load: staff posting and reading while a region fans out",
        "",
        f"`reliability/load.py`. One `zvonok serve` process (production dispatch settings) for a generated region "
        f"of {w['schools']} schools (of the 300 of the full region, so that a run takes minutes on this machine): "
        f"{w['max_chats']:,} MAX chats, {w['guardians']:,} guardians. The staff first post the closure of every "
        f"school through `POST /api/announcements` ({w['closure_deliveries']:,} deliveries, "
        f"{w['closure_letters']:,} of them letters), then for {p['minutes']:g} minutes, while that is delivered, "
        f"post {p['posts_per_minute']:g} announcements a minute (one class or one parallel of a random school) and "
        f"read: progress every {1 / p['progress_per_s']:g} s, a report every {p['report_every_s']} s, the list every "
        "10 s, each with its school deputy's API token, on schedule whether or not earlier requests have answered. "
        "The client runs on a thread and event loop of its own beside the SMTP emulator (the MAX emulator is a "
        "process of its own), on the same two cores as the gateway and PostgreSQL: the latencies include that "
        "contention. Then the run waits until every delivery is final, or until none has become final for two "
        "minutes (a stall).",
        "",
    ]
    for r in results:
        lines += [
            f"### {'SQLite' if r['backend'] == 'sqlite' else 'PostgreSQL'}",
            "",
            "| endpoint | requests | p50 ms | p95 ms | p99 ms | max ms | failed |",
            "|---|---|---|---|---|---|---|",
        ]
        failed: dict[str, int] = {}
        for f in r["failures"]:
            failed[f["endpoint"]] = failed.get(f["endpoint"], 0) + 1
        for endpoint, s in r["latency"].items():
            lines.append(
                f"| `{endpoint}` | {s['count']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} | {s['max_ms']} "
                f"| {failed.get(endpoint, 0)} |"
            )
        took = r["delivered_within_ms"]
        closure, small = took["closure"], took["class or parallel"]
        announced = r["announcements"]
        if r["seconds"]["final_after_last_post"] is None:
            still = ", ".join(f"{n:,} {status}" for status, n in r["stalled"]["open"].items())
            ending = (
                f"**It stalled**: no delivery became final for {r['stalled']['after_s']:.0f} s with {still} still "
                "open (see the notes below)."
            )
        else:
            ending = (
                f"Nothing stalled: the last delivery was final **{r['seconds']['final_after_last_post']} s** after "
                "the last post answered."
            )
        killed = " (it could not finish what it held within a minute and was killed)" if r["serve_exit_code"] else ""
        per_channel = "; ".join(
            f"{channel}: " + ", ".join(f"{n:,} {status}" for status, n in counts.items())
            for channel, counts in r["statuses"].items()
        )
        lines += [
            "",
            f"Failed requests: **{len(r['failures'])}**. Every delivery delivered: **{r['all_delivered']}** "
            f"({r['deliveries']:,} deliveries of {sum(announced.values())} announcements; {per_channel}); not "
            f"received by the chats and mailboxes at the end: **{r['received']['missing']}**, received twice: "
            f"**{r['received']['duplicates']}**. {ending}",
            "",
            f"From posting to the last delivery, of the announcements that completed: a school's closure "
            f"{_s(closure['p50_ms'])} median, {_s(closure['max_ms'])} the slowest ({closure['count']} of "
            f"{announced['closures']}); an announcement to a class or a parallel posted during the fan-out "
            f"{_s(small['p50_ms'])} median, {_s(small['p95_ms'])} p95, {_s(small['max_ms'])} at most ({small['count']} "
            f"of {announced['posted_during_load']}). MAX refusals (429): {r['rate_limited']['max_429']}. The "
            f"service's log at -v: {r['logs']['lines']:,} lines, {r['logs']['tracebacks']} tracebacks, "
            f"{r['logs']['unmasked_addresses']} unmasked e-mail addresses, {r['logs']['secrets']} tokens; exit code "
            f"at SIGTERM {r['serve_exit_code']}{killed}. Setup "
            f"(region written, rosters imported, tokens made, service started): {r['seconds']['setup']} s.",
            "",
        ]
    return lines


def _s(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.1f} s"


FAULTS = {
    "sigstop": "a worker paused (SIGSTOP) for 3 leases, then resumed",
    "skew": "a worker whose clock runs 2 h ahead (libfaketime); a tenth of MAX's answers lost",
    "pg_restart": "PostgreSQL restarted mid-fan-out",
    "full_disk": "the SQLite disk full for 10 s",
    "relay_outage": "the SMTP relay down for 90 s",
    "max_chatter": "a fifth of MAX's answers lost, then 150 parents' messages in each chat before the re-check",
}


def _faults_section(faults: dict[str, Any] | None) -> list[str]:
    if not faults:
        return []
    lines = [
        "## 3. Faults of a live process: pauses, clocks, the database, the relay",
        "",
        "`python -m reliability.faults`: real `zvonok worker` processes (two on PostgreSQL, one on SQLite), the MAX "
        "emulator in a process of its own, an SMTP server; one force majeure to a school of 150 classes on MAX (300 "
        "chats) with 600 parents out of the chats (600 letters), and one fault while it goes out. Counted against "
        "the roster when everything is final: lost (a chat or a parent that got nothing), duplicated, stuck (not "
        "final after 240 s), tracebacks in the workers' output.",
        "",
        "| fault | time to all final | lost | chat duplicates | letter duplicates | stuck | tried again "
        "(chats / letters) | tracebacks | what else |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    shown = ("scenario", "backend", "workers", "deliveries", "seconds", "lost", "chat_duplicates",
             "letter_duplicates", "stuck", "exit_codes", "tracebacks", "traceback_sample", "chats_tried_again",
             "letters_tried_again")  # fmt: skip
    for f in faults["scenarios"]:
        extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in f.items() if k not in shown)
        lines.append(
            f"| {FAULTS.get(f['scenario'], f['scenario'])} ({'SQLite' if f['backend'] == 'sqlite' else 'PostgreSQL'}) "
            f"| {f['seconds']} s | {f['lost']} | {f['chat_duplicates']} | {f['letter_duplicates']} | {f['stuck']} "
            f"| {f.get('chats_tried_again', '')} / {f.get('letters_tried_again', '')} | {f['tracebacks']} | {extra} |"
        )
    lines += [
        "",
        "A letter can arrive twice only where the relay had taken it and its outcome was not yet recorded when the "
        "sender stopped (or the relay cut the connection after the body): at most one letter per connection of the "
        "stopped worker's pool (4 here), since each letter is recorded as soon as the relay has it; same "
        "Message-ID. Chats never: MAX posts are fenced by the lease "
        "and reconciled by their marker, VK drops a repeated random_id.",
        "",
    ]
    return lines


def _hostile_section(results: list[dict[str, Any]]) -> list[str]:
    if not results:
        return []
    lines = [
        "## 4. Hostile input and login",
        "",
        "`python -m reliability.hostile`: the staff site as in the tests, 127.0.0.1 its trusted proxy (each client "
        "claims an address with X-Forwarded-For), on a manual clock. A login storm: 100 wrong passwords for the "
        "director sent at once from one address, then the right one from another; 5 wrong ones for a class "
        "teacher, then 10,000 attempts for made-up logins from 10,000 addresses through the same throttle, then "
        "the class teacher's right password again (still told to wait: nothing reset it); 15 wrong passwords for a "
        "known and 15 for unknown logins, timed. Then every hostile request of the corpus below, each answer's "
        "status counted.",
        "",
        "| | " + " | ".join("SQLite" if r["backend"] == "sqlite" else "PostgreSQL" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]

    def row(label: str, value: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(str(value(r)) for r in results) + " |")

    row("100 parallel wrong passwords: checked / told to wait", lambda r: f"{r['login']['password_checks']} / "
        f"{r['login']['told_to_wait']} ({r['login']['storm_seconds']} s)")  # fmt: skip
    row("the right password from another address meanwhile", lambda r: r["login"]["owner_from_elsewhere"])
    row("10,000 made-up logins: ms each; the account's wait kept", lambda r: f"{r['login']['made_up_ms_each']}; "
        f"{r['login']['account_wait_kept']}")  # fmt: skip
    row("wrong password, median ms: known login / unknown login", lambda r: f"{r['login']['known_wrong_ms']} / "
        f"{r['login']['unknown_ms']}")  # fmt: skip
    row("hostile requests / server errors", lambda r: f"{r['input']['requests']} / {r['input']['server_errors']}")
    row("announcements they created", lambda r: r["input"]["announcements_added"])
    lines += ["", "Each kind of hostile request and the statuses it got:", ""]
    lines += ["| request | " + " | ".join(r["backend"] for r in results) + " |", "|---|" + "---|" * len(results)]
    for what in results[0]["input"]["by_case"]:
        cells = [", ".join(f"{n}× {s}" for s, n in r["input"]["by_case"].get(what, {}).items()) for r in results]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _suites_section(suites: dict[str, Any] | None) -> list[str]:
    if not suites:
        return []
    lines = [
        "## 5. The fast reliability suites",
        "",
        "These run in `./run tests` as well; here each file runs alone with pytest (`--junitxml`), PostgreSQL "
        "required (`ZVONOK_REQUIRE_POSTGRES=1`: a PostgreSQL test fails rather than skips).",
        "",
        "| file | what it proves | tests | passed | failed | skipped or xfail | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in suites["files"]:
        proves = SUITES.get(f["file"]) or f["description"]
        if not f["present"]:
            lines.append(f"| `{f['file']}` | {proves} | not in the tree | | | | |")
            continue
        lines.append(
            f"| `{f['file']}` | {proves} | {f['tests']} | {f['passed']} | {f['failed']} | {f['skipped']} "
            f"| {f['wall_seconds']} s |"
        )
    return [*lines, ""]


SLOW_SMALL_MS = 30_000
SLOW_SMALL = (
    "an announcement to one class or parallel, posted during the closure, took {p50:.0f} s (median) to its last "
    "delivery, though it is a few chats and letters: letters go out oldest first, so its letters queue behind the "
    "closure's."
)


def _notes(chaos: list[dict[str, Any]], load: list[dict[str, Any]]) -> list[str]:
    """What did not hold in this run, from the results (nothing when everything held)."""
    notes = []
    for r in chaos:
        if not r["ok"]:
            got = r["received"]
            notes.append(
                f"- Chaos, {_backend(r)}: lost {_lost(r)}, duplicates in chats "
                f"{got['max']['duplicates'] + got['vk']['duplicates']}, stalled {r.get('stalled', False)}, workers "
                f"that died by themselves {r['crashed_by_themselves']}, exit codes at SIGTERM {r['final_exit_codes']}."
            )
    for r in load:
        name = "SQLite" if r["backend"] == "sqlite" else "PostgreSQL"
        if r["failures"]:
            notes.append(f"- Load, {name}: {len(r['failures'])} failed requests: {r['failures'][:5]}.")
        if r["seconds"]["final_after_last_post"] is None:
            void, ahead = r["logs"].get("void_reservations", 0), r.get("rate_schedule_ahead_s")
            still = ", ".join(f"{n:,} {status}" for status, n in r["stalled"]["open"].items())
            note = f"- Load, {name}: the deliveries stalled ({still}): none became final for "
            note += f"{r['stalled']['after_s']:.0f} s."
            if void or ahead:
                note += f" Rate-limit bookings voided: {void:,}; the shared schedules stood up to {ahead or 0:,.0f} s "
                note += "ahead of the clock (adapters/ratelimit.py, `ReservingBucket`)."
            notes.append(note)
        small = r["delivered_within_ms"]["class or parallel"]
        if small["p50_ms"] is not None and small["p50_ms"] > SLOW_SMALL_MS:
            notes.append(f"- Load, {name}: " + SLOW_SMALL.format(p50=small["p50_ms"] / 1000))
        if r["received"]["missing"] or r["received"]["duplicates"]:
            notes.append(
                f"- Load, {name}: not received by the end of the run {r['received']['missing']} (still in the store, "
                f"not lost), received twice {r['received']['duplicates']}."
            )
    if not notes:
        return []
    return ["## What did not hold", "", *notes, ""]


def _reproduce() -> list[str]:
    return [
        "## Reproduce",
        "",
        "```sh",
        "./run reliability                  # all four parts (chaos and load on both backends, hostile, suites)",
        "./run reliability --only chaos     # one part; --quick for a short development run; --render to rewrite",
        "python -m reliability.chaos --backend postgresql --kills 40 --seed 7   # a part alone, other settings",
        "python -m reliability.load --schools 300 --minutes 5                  # the full 300-school region",
        "```",
        "",
        "PostgreSQL: the local server's database `test` (`$ZVONOK_TEST_POSTGRES`); every run makes a schema of its "
        "own and drops it afterwards.",
    ]


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=PARTS, help="run only these parts")
    parser.add_argument("--quick", action="store_true", help="short chaos and load runs, for development")
    parser.add_argument("--kills", type=int, help="SIGKILLs per backend in the chaos part (default 25)")
    parser.add_argument("--render", action="store_true", help="only rewrite RELIABILITY.md from the results")
    args = parser.parse_args()
    ok = True
    if not args.render:
        for name in args.only or PARTS:
            part_args = list(QUICK.get(name, [])) if args.quick else []
            if name == "chaos" and args.kills is not None:
                part_args += ["--kills", str(args.kills)]
            ok &= run_part(name, part_args, quick=args.quick)
    render()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
