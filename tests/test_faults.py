"""Provider faults at outage scale, end to end: the real gateway on the MAX, VK and SMTP emulators over real HTTP and
SMTP, a real store, and a manual clock that carries the outages (a "60 s outage" is 60 s of the manual clock
covered by retries, not 60 s of waiting).

What every scenario proves, on what the emulators and the SMTP server actually received:

- everything retryable is delivered once the provider is back: each chat has exactly one message, each family
  exactly one letter (counted by Message-ID);
- only what is truly permanent fails for good (a chat the bot was removed from), and then its parents are
  e-mailed instead;
- the report (what `zvonok report` prints) explains each.

The school has twelve classes: 5А–6Г with a MAX parents' chat, 7А–7Г with a VK one. Two parents of each class are
in the chat, a third is not (a letter), and in every other MAX class a fourth has neither (the phone list).
The dispatch settings are the production defaults (retries from 30 s, ten attempts); provider timeouts are short
so that a "hang" costs a fraction of a second of real time.

The adapters' own handling of single faults is in tests/test_max_adapter.py, test_vk_adapter.py and
test_email_adapter.py; single faults through the dispatcher in test_dispatch_email.py, test_rules.py and
test_chats.py. This file is about outages: many deliveries, many rounds, then recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters.emulators.max import MaxEmulator
from adapters.emulators.smtp import SmtpEmulator
from adapters.emulators.vk import VkEmulator
from gateway.app import Gateway
from gateway.cli import main
from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.domain import Status
from gateway.reports import render_text
from gateway.roster import parse_roster
from tests.data import write_config
from tests.world import MAX_TOKEN, VK_TOKEN, World

MAX_CLASSES = ("5А", "5Б", "5В", "5Г", "6А", "6Б", "6В", "6Г")
VK_CLASSES = ("7А", "7Б", "7В", "7Г")
MAX_CHATS = {name: -1001 - i for i, name in enumerate(MAX_CLASSES)}
VK_PEERS = {name: 2_000_000_001 + i for i, name in enumerate(VK_CLASSES)}


def _school_yaml() -> str:
    lines = [
        "id: s1",
        "name: Школа № 2",
        "timezone: Asia/Yekaterinburg",
        f"max: {{token: {MAX_TOKEN}}}",
        f"vk: {{token: {VK_TOKEN}}}",
        "staff:",
        "  - {id: dep, name: Завучева Ольга, role: deputy}",
        "  - {id: it, name: Админов Иван, role: admin}",
        "classes:",
    ]
    for name, chat in MAX_CHATS.items():
        lines += [f"  - name: {name}", "    chats:", f"      parents: {{channel: max, chat_id: {chat}}}"]
    for name, peer in VK_PEERS.items():
        lines += [f"  - name: {name}", "    chats:", f"      parents: {{channel: vk, peer_id: {peer}}}"]
    return "\n".join(lines) + "\n"


def _roster() -> str:
    rows = ["Класс;Ученик;Представитель;E-mail;Телефон;В чате"]
    for i, name in enumerate(MAX_CLASSES + VK_CLASSES):
        for n, in_chat in ((1, "да"), (2, "да"), (3, "нет")):
            rows.append(f"{name};Ученик {name}-{n};Родитель {name}-{n};p{i}-{n}@mail.test;;{in_chat}")
        if name in MAX_CLASSES and i % 2 == 0:
            rows.append(f"{name};Ученик {name}-4;Без Почты {name};;+7 900 100-{i:02d}-04;нет")
    return "\n".join(rows) + "\n"


SCHOOL_YAML = _school_yaml()
ROSTER_CSV = _roster()
OUT_OF_CHAT = {f"p{i}-3@mail.test" for i in range(len(MAX_CLASSES + VK_CLASSES))}
NO_EMAIL = len(MAX_CLASSES) // 2

# Production dispatch defaults (retries from 30 s, capped at 30 min, ten attempts); short provider timeouts.
SETTINGS_YAML = """\
email: {host: 127.0.0.1, port: 2525, from: noreply@s1.test, timeout: 2}
max: {timeout: 0.3}
vk: {timeout: 0.5}
dispatch: {lease_seconds: 30}
"""


class Hop:
    """A TCP hop between the gateway and one emulator: up, it pipes bytes both ways; down, nothing listens on its
    port (a connection is refused, as when the provider's host is unreachable) and the connections through it
    are cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def _pipe(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()  # one side gone: so is the other (what a dead host looks like)

        try:
            await asyncio.gather(copy(client_r, server_w), copy(server_r, client_w))
        finally:
            self._writers -= {client_w, server_w}


@dataclass
class Site(World):
    """The world of tests/world.py on the larger school, with the hops the test put in front of the emulators."""

    hops: dict[str, Hop] = field(default_factory=dict)
    config_root: Path = Path()

    def chat_counts(self) -> dict[str, int]:
        counts = {name: len(self.max.messages(chat)) for name, chat in MAX_CHATS.items()}
        counts |= {name: len(self.vk.messages(peer)) for name, peer in VK_PEERS.items()}
        return counts

    def letters_by_id(self) -> Counter[tuple[str, str]]:
        """(recipient, Message-ID) → how many copies arrived."""
        return Counter((r, str(m.message["Message-ID"])) for m in self.smtp.messages for r in m.recipients)


@asynccontextmanager
async def site(
    tmp_path: Path,
    clock: ManualClock,
    *,
    database: str | None = None,
    hops: tuple[str, ...] = (),
    host: str = "127.0.0.1",
) -> AsyncIterator[Site]:
    """The emulators, the school above and a gateway on them; `hops` names the providers ("max", "vk", "smtp")
    reached through a `Hop`; `host` is the name the gateway knows them all by (e.g. one that does not resolve)."""
    database = database or f"sqlite:///{tmp_path / 'z.db'}"
    settings = SETTINGS_YAML + f"database: {database}\n"
    root = write_config(tmp_path / "config", school=SCHOOL_YAML, settings=settings)
    config = load_config(root)
    async with SmtpEmulator() as smtp, MaxEmulator() as max_api, VkEmulator() as vk_api:
        max_api.add_bot(MAX_TOKEN, "Бот школы № 2")
        for name, chat in MAX_CHATS.items():
            max_api.add_chat(chat, f"{name} родители", token=MAX_TOKEN)
        vk_api.add_community(VK_TOKEN, 1)
        for name, peer in VK_PEERS.items():
            vk_api.add_chat(peer - 2_000_000_000, f"{name} родители", group_id=1)
        routes: dict[str, Hop] = {}
        for name, target in (("max", max_api.port), ("vk", vk_api.port), ("smtp", smtp.port)):
            if name in hops:
                routes[name] = Hop(("127.0.0.1", target))
                await routes[name].up()
        max_port = routes["max"].port if "max" in routes else max_api.port
        vk_port = routes["vk"].port if "vk" in routes else vk_api.port
        smtp_port = routes["smtp"].port if "smtp" in routes else smtp.port
        s = config.settings
        config = replace(
            config,
            settings=replace(
                s,
                email=replace(s.email, host=host, port=smtp_port),
                max=replace(s.max, base_url=f"http://{host}:{max_port}"),
                vk=replace(s.vk, base_url=f"http://{host}:{vk_port}"),
            ),
        )
        gateway = await Gateway.open(config, clock=clock)
        await gateway.import_roster("s1", parse_roster(ROSTER_CSV.encode(), config.schools["s1"]))
        world = Site(gateway, smtp, max_api, vk_api, routes, root)
        try:
            yield world
        finally:
            await world.gateway.close()
            for hop in routes.values():
                await hop.down()


async def ride_out(
    world: Site,
    clock: ManualClock,
    *,
    outage: float,
    recover: Callable[[], Awaitable[None] | None],
    step: float = 20.0,
    rounds: int = 40,
) -> list[datetime]:
    """Dispatch; then, again and again, move the manual clock to the next due delivery (at least `step` seconds on,
    as a dispatcher polling that often would: retries jittered apart are then sent in one round) and dispatch,
    until nothing is open. The provider is down while the clock is less than `outage` seconds past the start:
    `recover()` is called before the first round at or past that. Returns the moments the dispatcher ran."""
    end = clock.now() + timedelta(seconds=outage)
    healed = False
    ran: list[datetime] = []
    for _ in range(rounds):
        if not healed and clock.now() >= end:
            if inspect.isawaitable(recovering := recover()):
                await recovering
            healed = True
        ran.append(clock.now())
        await world.deliver()
        due = await world.gateway.store.next_due()
        if due is None:
            assert healed, "everything became final during the outage"
            return ran
        clock.set(max(due, clock.now() + timedelta(seconds=step)))
    raise AssertionError(f"still not done after {rounds} rounds")


def every_chat_once() -> dict[str, int]:
    return dict.fromkeys(MAX_CLASSES + VK_CLASSES, 1)


# --------------------------------------------------------------------------------------------------- MAX and VK down


async def test_max_and_vk_answering_5xx_for_60_s_deliver_everything_once_after(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with site(tmp_path, clock) as world:
        world.max.fail_next(10**6, 503, method=None, path=None)  # every request, reads too
        world.vk.http_error_next(503, times=10**6)
        announcement_id = await world.post()

        def recover() -> None:
            world.max.clear_faults()
            world.vk.clear_faults()

        ran = await ride_out(world, clock, outage=60, recover=recover)
        assert len(ran) >= 3  # the outage really took several rounds
        assert world.chat_counts() == every_chat_once()
        assert world.letters() == dict.fromkeys(OUT_OF_CHAT, 1)  # e-mail was never held up
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {d.status for d in rows} == {Status.DELIVERED}
        chats = [d for d in rows if d.channel != "email"]
        assert min(d.attempts for d in chats) >= 2
        history = await world.gateway.store.attempts(next(d.id for d in chats if d.channel == "max"))
        assert {a.outcome for a in history[:-1]} == {"transient"}
        assert history[-1].outcome == "delivered"
        report = await world.gateway.report(announcement_id)
        assert report.complete and report.chats_delivered == report.chats_total == 12
        assert report.counts() == {"in_chat": 24, "emailed": 12, "unreachable": NO_EMAIL}


async def test_max_proxy_answering_502_for_10_minutes_uses_up_no_delivery(tmp_path: Path, clock: ManualClock) -> None:
    """A 502 to a send may hide a stored message, so each retry first reads the chat; the reads fail too. Those
    rechecks back off like any retry, so a ten-minute outage leaves every chat delivery open, not failed."""
    async with site(tmp_path, clock) as world:
        world.max.fail_next(10**6, 502, method=None, path=None)
        announcement_id = await world.post(classes=frozenset({"5А", "5Б"}))
        ran = await ride_out(world, clock, outage=600, recover=world.max.clear_faults, step=60)
        assert world.chat_counts() == {name: int(name in ("5А", "5Б")) for name in MAX_CLASSES + VK_CLASSES}
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {d.status for d in rows} == {Status.DELIVERED}
        attempts = max(d.attempts for d in rows if d.channel == "max")
        assert 3 <= attempts < world.gateway.config.settings.dispatch.max_attempts
        assert len(ran) >= attempts
        # nobody was e-mailed in place of the chat: only the parents who are not in it
        assert world.letters() == {"p0-3@mail.test": 1, "p1-3@mail.test": 1}


async def test_max_and_vk_timing_out_for_60_s_deliver_everything_once_though_some_sends_had_arrived(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with site(tmp_path, clock) as world:
        # The first send to 5А is stored and its answer never comes; the first to 5Б is stored and the connection
        # cut; then MAX answers nothing at all (sends and the reads that reconcile them). VK stores the first
        # batch and then stops answering.
        world.max.hang_next(1, store=True, chat_id=MAX_CHATS["5А"])
        world.max.drop_next(1, chat_id=MAX_CHATS["5Б"])
        world.max.hang_next(10**6, store=False, method=None, path=None)
        world.vk.hang_next(1, after_processing=True)
        world.vk.hang_next(10**6)
        announcement_id = await world.post()
        await world.deliver()
        assert [len(world.max.messages(MAX_CHATS[name])) for name in ("5А", "5Б", "5В")] == [1, 1, 0]
        assert all(len(world.vk.messages(peer)) == 1 for peer in VK_PEERS.values())
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {d.status for d in rows if d.channel != "email"} == {Status.UNKNOWN}

        def recover() -> None:
            world.max.clear_faults()
            world.vk.clear_faults()

        await ride_out(world, clock, outage=60, recover=recover)
        assert world.chat_counts() == every_chat_once()
        assert world.letters() == dict.fromkeys(OUT_OF_CHAT, 1)
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {d.status for d in rows} == {Status.DELIVERED}
        by_target = {d.target: d for d in rows}
        for name in ("5А", "5Б"):  # found in the chat by its marker, not sent again
            history = await world.gateway.store.attempts(by_target[str(MAX_CHATS[name])].id)
            assert history[-1].outcome == "reconciled"
            assert {a.outcome for a in history[:-1]} == {"unknown"}
        history = await world.gateway.store.attempts(by_target[str(MAX_CHATS["6Г"])].id)
        assert (history[0].outcome, history[-1].outcome) == ("unknown", "delivered")
        # VK answered the resends of the stored batch with the original messages (random_id): nothing new.
        assert [m.message_id for peer in VK_PEERS.values() for m in world.vk.messages(peer)] == [1, 2, 3, 4]


async def test_429_and_error_6_storms_are_ridden_out_without_hammering(tmp_path: Path, clock: ManualClock) -> None:
    """For half a minute MAX answers every request with 429 and VK every request with error 6. (One MAX chat: the
    adapter holds the token for a real second after each 429, which is what makes a storm slow, not the clock.)"""
    async with site(tmp_path, clock) as world:
        world.max.fail_next(10**6, 429, code="too.many.requests", method=None, path=None)
        world.vk.fail_next(6, times=10**6)
        announcement_id = await world.post(classes=frozenset({"5А", *VK_CLASSES}))
        during: dict[str, int] = {}

        def recover() -> None:
            during.update(max=world.max.request_count(MAX_TOKEN), vk=world.vk.rate_limit_errors(VK_TOKEN))
            world.max.clear_faults()
            world.vk.clear_faults()

        ran = await ride_out(world, clock, outage=30, recover=recover)
        storm_rounds = sum(1 for t in ran if t < ran[0] + timedelta(seconds=30))
        assert world.chat_counts() == {name: int(name == "5А" or name in VK_CLASSES) for name in world.chat_counts()}
        # Each storm round asks MAX at most three times (the adapter's in-call retries) and VK once, then backs off.
        assert 3 <= during["max"] <= 3 * storm_rounds
        assert 1 <= during["vk"] <= storm_rounds
        assert world.vk.rate_limit_errors(VK_TOKEN) == during["vk"]  # no error 6 after the storm
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {d.status for d in rows} == {Status.DELIVERED}
        for channel in ("max", "vk"):
            chat = next(d for d in rows if d.channel == channel)
            outcomes = [a.outcome for a in await world.gateway.store.attempts(chat.id)]
            assert outcomes[0] == "rate_limited" and outcomes[-1] == "delivered"


# --------------------------------------------------------------------------------------------------------- SMTP


async def test_smtp_refusing_with_4xx_for_5_minutes_then_greylisting(tmp_path: Path, clock: ManualClock) -> None:
    async with site(tmp_path, clock) as world:
        world.smtp.refuse(421, count=None, seconds=3600, stage="connect")
        announcement_id = await world.post()
        await world.deliver()
        # While the relay refuses, every letter is on its way, none has bounced.
        report = await world.gateway.report(announcement_id)
        assert report.counts() == {"in_chat": 24, "pending": 12, "unreachable": NO_EMAIL}
        letters = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "email"]
        assert {(d.status, d.error_code) for d in letters} == {(Status.TEMPORARY_FAILURE, "smtp:421")}
        assert all("временно" in d.last_error for d in letters)

        def recover() -> None:
            world.smtp.reset_faults()
            for address in sorted(OUT_OF_CHAT)[:4]:
                world.smtp.greylist(address, times=2)

        await ride_out(world, clock, outage=300, recover=recover)
        assert world.letters() == dict.fromkeys(OUT_OF_CHAT, 1)
        assert max(world.letters_by_id().values()) == 1
        letters = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "email"]
        assert {d.status for d in letters} == {Status.DELIVERED}
        greylisted = next(d for d in letters if d.target == sorted(OUT_OF_CHAT)[0])
        codes = [a.error_code for a in await world.gateway.store.attempts(greylisted.id)]
        assert codes[-3:] == ["smtp:450", "smtp:450", ""]
        report = await world.gateway.report(announcement_id)
        assert report.complete and report.counts() == {"in_chat": 24, "emailed": 12, "unreachable": NO_EMAIL}


async def test_smtp_connections_dropped_during_and_after_data(tmp_path: Path, clock: ManualClock) -> None:
    async with site(tmp_path, clock) as world:
        world.smtp.drop_during_data(10**6)  # for a minute every connection dies in the middle of the body
        announcement_id = await world.post()
        await world.deliver()
        assert world.smtp.messages == []

        def recover() -> None:
            world.smtp.reset_faults()
            world.smtp.drop_after_data(3)  # three letters arrive, but the server's answer to the dot is lost

        await ride_out(world, clock, outage=60, recover=recover)
        copies = world.letters_by_id()
        assert {address for address, _ in copies} == OUT_OF_CHAT
        assert len(copies) == len(OUT_OF_CHAT)  # one Message-ID per family, whatever was resent
        # The one case that may duplicate a letter, and only it: exactly the three broken after the dot.
        assert sorted(copies.values()) == [1] * (len(OUT_OF_CHAT) - 3) + [2] * 3
        letters = [d for d in await world.gateway.store.deliveries(announcement_id) if d.channel == "email"]
        assert {d.status for d in letters} == {Status.DELIVERED}
        assert all(d.attempts >= 2 for d in letters)
        report = await world.gateway.report(announcement_id)
        assert report.complete and report.emails_delivered == report.emails_total == 12


# --------------------------------------------------------------------------------------------- chats going away


async def test_bot_removed_from_half_the_chats_mid_announcement(
    tmp_path: Path, clock: ManualClock, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half the chats take the announcement at once; the other half hit a passing error. Then the bot is removed
    from half of all the chats: some of those already have the message (it stays delivered), the rest are dead:
    their parents are e-mailed instead, the admin is alerted, and the report says why."""
    late = ("5В", "5Г", "6В", "6Г", "7В", "7Г")
    removed = ("5А", "5В", "6А", "6В", "7А", "7В")
    dead = sorted(set(late) & set(removed))
    async with site(tmp_path, clock, database=database) as world:
        for name in late:
            if name in MAX_CHATS:
                world.max.fail_next(1, 503, chat_id=MAX_CHATS[name])
            else:
                world.vk.fail_next(9, method="messages.send", peer_id=VK_PEERS[name])  # flood control: minutes
        announcement_id = await world.post()
        await world.deliver()
        assert world.chat_counts() == {name: int(name not in late) for name in MAX_CLASSES + VK_CLASSES}
        for name in removed:
            if name in MAX_CHATS:
                await world.max.remove_bot_from_chat(MAX_CHATS[name], MAX_TOKEN)
            else:
                world.vk.set_chat_state(VK_PEERS[name] - 2_000_000_000, "kicked")

        await ride_out(world, clock, outage=0, recover=lambda: None)
        assert world.chat_counts() == {name: int(name not in dead) for name in MAX_CLASSES + VK_CLASSES}
        in_dead_chats = {f"p{(MAX_CLASSES + VK_CLASSES).index(name)}-{n}@mail.test" for name in dead for n in (1, 2)}
        assert world.letters() == dict.fromkeys(OUT_OF_CHAT | in_dead_chats, 1)

        rows = await world.gateway.store.deliveries(announcement_id)
        chats = {d.class_name: d for d in rows if d.channel != "email"}
        assert {name for name, d in chats.items() if d.status is Status.PERMANENT_FAILURE} == set(dead)
        assert {chats[name].error_code for name in dead} == {"max:chat.denied", "vk:917"}
        assert all(d.status is Status.DELIVERED for d in rows if d.class_name not in dead or d.channel == "email")
        expected_dead = {("max", str(MAX_CHATS[n])) for n in dead if n in MAX_CHATS}
        expected_dead |= {("vk", str(VK_PEERS[n])) for n in dead if n in VK_PEERS}
        assert await world.gateway.store.dead_chats("s1") == expected_dead
        alerts = [a for a in await world.gateway.store.alerts("s1") if a.kind == "dead_chat"]
        assert sorted(next(n for n in dead if n in a.message) for a in alerts) == dead

        report = await world.gateway.report(announcement_id)
        assert report.complete
        assert report.counts() == {"in_chat": 24 - 2 * len(dead), "emailed": 12 + 2 * len(dead), "unreachable": 4}
        for cls in report.classes:
            if cls.name in dead:
                assert {p.bucket for p in cls.people if p.name.startswith("Родитель")} == {"emailed"}
                moved = [p for p in cls.people if p.name.endswith(("-1", "-2"))]
                assert {p.reason for p in moved} == {"сообщение в чат не доставлено"}

        # What the IT admin reads: `zvonok report` against the same store.
        code = await asyncio.to_thread(main, ["report", str(announcement_id), "--config", str(world.config_root)])
        printed = capsys.readouterr().out
        assert code == 0
        assert f"Доставки: завершено {len(rows)} из {len(rows)} (чаты 9/12, письма 18/18)" in printed
        assert "Представители: в чате 18, письмом 18, в пути 0, письмо не доставлено 0, без связи 4" in printed
        assert (
            f"Класс 5В\n  чат родителей MAX: не доставлено — MAX не даёт боту писать в чат {MAX_CHATS['5В']}: "
            "бота удалили из чата, лишили прав администратора или чат закрыт"
        ) in printed
        assert f"Класс 7В\n  чат родителей VK: не доставлено — Бот сообщества не состоит в чате {VK_PEERS['7В']}" in (
            printed
        )
        assert "Класс 5А\n  чат родителей MAX: доставлено\n" in printed  # removed after the message arrived
        assert "Без Почты 5В  +79001000204 (ученик: Ученик 5В-4) — нет в чате родителей; нет e-mail" in printed


# ------------------------------------------------------------------------------- connections refused, names unknown


async def test_providers_refusing_connections_for_60_s(tmp_path: Path, clock: ManualClock) -> None:
    """MAX, VK and the SMTP relay become unreachable (connection refused; the pooled connections are cut) for a
    minute, then come back: the announcement posted meanwhile reaches everyone once, and the one delivered before
    is not sent again."""
    async with site(tmp_path, clock, hops=("max", "vk", "smtp")) as world:
        before = await world.post(title="Собрание", text="В среду в 18:00.")
        await world.deliver()  # the connection pools now hold open connections through the hops
        assert world.chat_counts() == every_chat_once()
        for hop in world.hops.values():
            await hop.down()
        announcement_id = await world.post()
        await world.deliver()
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {(d.channel, d.status, d.error_code) for d in rows} == {
            ("max", Status.TEMPORARY_FAILURE, "max:connect"),
            ("vk", Status.TEMPORARY_FAILURE, "vk:connect"),
            ("email", Status.TEMPORARY_FAILURE, "smtp:connect"),
        }
        report = await world.gateway.report(announcement_id)
        assert report.counts() == {"pending": 36, "unreachable": NO_EMAIL}  # nobody given up on
        assert "чат родителей MAX: временная ошибка, повтор — Не удалось подключиться к серверу MAX." in render_text(
            report
        )

        async def recover() -> None:
            for hop in world.hops.values():
                await hop.up()

        await ride_out(world, clock, outage=60, recover=recover)
        assert all(hop.is_up for hop in world.hops.values())
        assert world.chat_counts() == dict.fromkeys(MAX_CLASSES + VK_CLASSES, 2)  # one of each announcement
        assert world.letters() == dict.fromkeys(OUT_OF_CHAT, 2)
        assert max(world.letters_by_id().values()) == 1
        assert await world.gateway.store.dead_chats("s1") == set()
        for done in (before, announcement_id):
            report = await world.gateway.report(done)
            assert report.complete and report.counts() == {"in_chat": 24, "emailed": 12, "unreachable": NO_EMAIL}


async def test_provider_names_that_do_not_resolve_wait_for_the_fix(tmp_path: Path, clock: ManualClock) -> None:
    """The gateway knows the providers by a name DNS cannot resolve (a broken resolver, a typo in zvonok.yaml):
    every delivery waits as a passing error, none fails for good, no chat is declared dead. Once the name is fixed
    and the gateway restarted on the same store, each chat and family gets the announcement once."""
    async with site(tmp_path, clock, host="zvonok-providers.invalid") as world:
        announcement_id = await world.post(classes=frozenset({"5А", "5Б"}))
        await world.deliver()
        clock.advance(60)  # past every first retry (15–30 s)
        await world.deliver()
        rows = await world.gateway.store.deliveries(announcement_id)
        assert {(d.channel, d.status, d.error_code) for d in rows} == {
            ("max", Status.TEMPORARY_FAILURE, "max:connect"),
            ("email", Status.TEMPORARY_FAILURE, "smtp:connect"),
        }
        assert all(d.attempts == 2 for d in rows)
        assert "zvonok-providers.invalid" in next(d.last_error for d in rows if d.channel == "email")
        assert await world.gateway.store.dead_chats("s1") == set()
        assert world.chat_counts() == dict.fromkeys(MAX_CLASSES + VK_CLASSES, 0)

        config = world.gateway.config
        s = config.settings
        fixed = replace(
            s,
            email=replace(s.email, host="127.0.0.1"),
            max=replace(s.max, base_url=s.max.base_url.replace("zvonok-providers.invalid", "127.0.0.1")),
            vk=replace(s.vk, base_url=s.vk.base_url.replace("zvonok-providers.invalid", "127.0.0.1")),
        )
        await world.gateway.close()
        world.gateway = await Gateway.open(replace(config, settings=fixed), clock=clock)
        await ride_out(world, clock, outage=0, recover=lambda: None)
        assert world.chat_counts() == {name: int(name in ("5А", "5Б")) for name in MAX_CLASSES + VK_CLASSES}
        assert world.letters() == {"p0-3@mail.test": 1, "p1-3@mail.test": 1}
        report = await world.gateway.report(announcement_id)
        assert report.complete and report.counts() == {"in_chat": 4, "emailed": 2, "unreachable": 1}
