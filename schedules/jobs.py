"""The periodic jobs of a running gateway (APScheduler): window-opening wake-ups, forwarding deadlines, chat
health, personal-data retention, the class windows and the clock. They only trigger work; the store holds it.
Jobs that do work run once per period across processes (`claim_tick`); wake-ups and re-reads run in every
process. Which job runs when, and why: docs/architecture.md, "The periodic jobs".
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("zvonok.jobs")

OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""Who claims ticks from this process (recorded in the ticks table, for the curious)."""

DEADLINES_EVERY = timedelta(minutes=1)
HEALTH_EVERY = timedelta(hours=6)
RETENTION_EVERY = timedelta(days=1)
RETENTION_MINUTE = 17  # of every hour (UTC): off the hour, when other work starts
CLASS_WINDOWS_EVERY = timedelta(minutes=1)
OPENING_PREFIX = "window-open:"


def period_key(fired: datetime, every: timedelta) -> str:
    """The period a job fired at `fired` runs for: `fired` floored to a multiple of `every` since the epoch, in
    UTC, ISO 8601 to the minute. For a job fired on those boundaries (a cron trigger), it is the job's scheduled
    fire time, the same in every process."""
    step = int(every.total_seconds())
    if step < 60 or step % 60:
        raise ValueError("periods are whole minutes")
    seconds = int(fired.astimezone(UTC).timestamp())
    start = datetime.fromtimestamp(seconds - seconds % step, UTC)
    return start.strftime("%Y-%m-%dT%H:%MZ")


async def once_per_period(gateway: Gateway, job: str, every: timedelta, body: Callable[[], Awaitable[None]]) -> bool:
    """Run `body` if this process wins the job's tick for the current period; True when it ran."""
    now = gateway.clock.now()
    period = period_key(now, every)
    try:
        won = await gateway.store.claim_tick(job, period, OWNER, now)
    except Exception:  # a store hiccup: this period is skipped here, and the next firing tries again
        log.exception("could not claim the %s tick for %s", job, period)
        return False
    if not won:
        log.debug("%s for %s runs in another process", job, period)
        return False
    await body()
    return True


def opening_jobs(gateway: Gateway) -> dict[str, tuple[time, ZoneInfo]]:
    """The window-opening wake-ups the schools need now: job id -> (local time, zone). Every school's window and
    every class's (as set at run time, else as configured) opening, once per school and time."""
    jobs: dict[str, tuple[time, ZoneInfo]] = {}
    for school_id in gateway.config.schools:
        school = gateway.current_school(school_id)
        openings = {school.window.start} | {c.window.start for c in school.classes.values() if c.window}
        for opening in openings:
            jobs[f"{OPENING_PREFIX}{school.id}:{opening:%H%M}"] = (opening, school.zone)
    return jobs


def schedule_openings(scheduler: AsyncIOScheduler, gateway: Gateway) -> None:
    """Make the scheduler's window-opening wake-ups those `opening_jobs` says: add the missing, drop the stale."""
    wanted = opening_jobs(gateway)
    for job in scheduler.get_jobs():
        if job.id.startswith(OPENING_PREFIX) and job.id not in wanted:
            job.remove()
    for job_id, (opening, zone) in sorted(wanted.items()):
        if scheduler.get_job(job_id) is None:
            scheduler.add_job(
                gateway.dispatcher.wake,
                CronTrigger(hour=opening.hour, minute=opening.minute, timezone=zone),
                id=job_id,
                misfire_grace_time=600,
                coalesce=True,
            )


def start_scheduler(gateway: Gateway) -> AsyncIOScheduler:
    """Start the jobs on the running event loop; the caller shuts the scheduler down."""
    scheduler = AsyncIOScheduler()
    schedule_openings(scheduler, gateway)

    def windows_changed() -> None:
        if scheduler.state == STATE_STOPPED:  # shut down: nothing more to move
            stop_listening()
            return
        schedule_openings(scheduler, gateway)

    stop_listening = gateway.on_class_windows_changed(windows_changed)

    async def class_windows() -> None:
        try:
            if await gateway.refresh_class_windows():
                log.info("class windows changed elsewhere: window openings rescheduled")
        except Exception:  # a store hiccup: the windows read last stay in force, and the next run reads again
            log.exception("could not read the class windows")

    async def clock() -> None:
        try:
            await gateway.sync_clock()
        except Exception as exc:  # the offset measured last stays in force, and the next run measures again
            log.warning("could not compare the clock with the database's (%s)", type(exc).__name__)

    async def deadlines() -> None:
        try:
            handled = await gateway.handle_overdue_tasks()
        except Exception:  # a store hiccup: the tasks stay open and the next run handles them
            log.exception("forwarding deadline check failed")
            return
        if handled:
            log.info("forwarding deadlines: %d task(s) handled", handled)

    async def health() -> None:
        for school_id in gateway.config.schools:
            try:
                await gateway.check_chats(school_id, stale_only=True)
            except Exception:
                log.exception("chat health check of school %s failed", school_id)

    async def retention() -> None:
        try:
            await gateway.purge_personal_data()
        except Exception:  # a store hiccup: nothing was removed (one transaction), and tomorrow's run removes it
            log.exception("personal data retention purge failed")

    async def deadlines_tick() -> bool:
        return await once_per_period(gateway, "forwarding-deadlines", DEADLINES_EVERY, deadlines)

    async def health_tick() -> bool:
        return await once_per_period(gateway, "chat-health", HEALTH_EVERY, health)

    async def retention_tick() -> bool:
        return await once_per_period(gateway, "retention", RETENTION_EVERY, retention)

    scheduler.add_job(
        deadlines_tick,
        CronTrigger(minute="*", timezone=UTC),  # second 0 of every minute, in every process
        id="forwarding-deadlines",
        misfire_grace_time=30,  # a run up to 30 s late still belongs to (and names) its minute
        coalesce=True,
    )
    scheduler.add_job(health_tick, IntervalTrigger(hours=6), id="chat-health", coalesce=True)
    scheduler.add_job(
        retention_tick,
        CronTrigger(minute=RETENTION_MINUTE, timezone=UTC),  # every hour; the day's first try runs it
        id="retention",
        misfire_grace_time=600,
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        class_windows,
        IntervalTrigger(seconds=int(CLASS_WINDOWS_EVERY.total_seconds())),
        id="class-windows",
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(clock, IntervalTrigger(seconds=60), id="clock", coalesce=True, max_instances=1)
    scheduler.start()
    return scheduler
