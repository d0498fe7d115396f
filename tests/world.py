"""A running world for end-to-end tests: the MAX, VK and SMTP emulators and a gateway wired to them.

The school is tests/data.py's: MAX chats for the teachers (-100) and 5А (-501 parents, -502 students), a VK
parents' chat for 5Б (peer 2000000001), no chats for 7Б.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from apscheduler.job import Job

from adapters.emulators.max import MaxEmulator
from adapters.emulators.smtp import SmtpEmulator
from adapters.emulators.vk import VkEmulator
from gateway.app import Gateway
from gateway.clock import Clock
from gateway.config import load_config
from gateway.domain import AnnouncementRequest, Audience, Group, Kind
from gateway.roster import parse_roster
from schedules.jobs import start_scheduler
from tests.data import ROSTER_CSV, SCHOOL_YAML, ZVONOK_YAML, write_config

MAX_TOKEN = "max-token-s1"
VK_TOKEN = "vk-token-s1"
WEBHOOK_SECRET = "hook-secret-s1"


@dataclass
class World:
    gateway: Gateway
    smtp: SmtpEmulator
    max: MaxEmulator
    vk: VkEmulator

    def letters(self) -> Counter[str]:
        return Counter(r for m in self.smtp.messages for r in m.recipients)

    async def post(
        self,
        groups: set[Group] | None = None,
        *,
        author: str = "dep",
        kind: Kind = Kind.SCHEDULE_CHANGE,
        title: str = "Уроки сокращены",
        text: str = "Завтра уроки по 30 минут.",
        via_class_teachers: bool = False,
        **audience: frozenset[str] | frozenset[int],
    ) -> int:
        request = AnnouncementRequest(
            "s1",
            author,
            kind,
            title,
            text,
            Audience(frozenset(groups or {Group.PARENTS}), **audience),  # type: ignore[arg-type]
            via_class_teachers=via_class_teachers,
        )
        return (await self.gateway.post(request)).id

    async def deliver(self, rounds: int = 5) -> None:
        for _ in range(rounds):
            if not await self.gateway.dispatcher.run_once():
                return


@asynccontextmanager
async def running_world(
    tmp_path: Path, clock: Clock, *, school_yaml: str = SCHOOL_YAML, database: str | None = None
) -> AsyncIterator[World]:
    """The emulators and a gateway on them; the store is a SQLite file in `tmp_path` unless `database` names one."""
    school = school_yaml.replace(
        "max: {token: max-token-s1}", f"max: {{token: {MAX_TOKEN}, webhook_secret: {WEBHOOK_SECRET}}}"
    )
    root = write_config(tmp_path / "config", school=school, settings=ZVONOK_YAML)
    config = load_config(root)
    async with SmtpEmulator() as smtp, MaxEmulator() as max_api, VkEmulator() as vk_api:
        max_api.add_bot(MAX_TOKEN, "Бот школы № 1")
        for chat_id in (-100, -501, -502):
            max_api.add_chat(chat_id, f"Чат {chat_id}", token=MAX_TOKEN)
        vk_api.add_community(VK_TOKEN, 1)
        vk_api.add_chat(1, "5Б родители", group_id=1)
        s = config.settings
        config = replace(
            config,
            settings=replace(
                s,
                database=database or f"sqlite:///{tmp_path / 'z.db'}",
                email=replace(s.email, host=smtp.host, port=smtp.port),
                max=replace(s.max, base_url=max_api.base_url),
                vk=replace(s.vk, base_url=vk_api.base_url),
            ),
        )
        gateway = await Gateway.open(config, clock=clock)
        await gateway.import_roster("s1", parse_roster(ROSTER_CSV.encode(), config.schools["s1"]))
        world = World(gateway, smtp, max_api, vk_api)
        try:
            yield world
        finally:
            await world.gateway.close()  # the one the test left there: it may have restarted the gateway


@asynccontextmanager
async def two_processes_jobs(world: World, clock: Clock, job: str) -> AsyncIterator[list[Job]]:
    """The periodic job `job` as two processes on the same database schedule it (the world's gateway and a second
    one), their schedulers paused: the test fires the jobs itself, at the manual clock's times."""
    other = await Gateway.open(world.gateway.config, clock=clock)
    schedulers = [start_scheduler(world.gateway), start_scheduler(other)]
    for s in schedulers:
        s.pause()
    try:
        jobs = [s.get_job(job) for s in schedulers]
        assert all(j is not None for j in jobs)
        yield [j for j in jobs if j is not None]
    finally:
        for s in schedulers:
            s.shutdown(wait=False)
        await other.close()
