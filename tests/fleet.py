"""A fleet for multi-process runs (tests/test_workers.py, bench/workers.py): generated schools whose chats live
on the MAX and VK emulators, rosters whose parents are not in the chats (one letter each, to the SMTP
emulator), one shared store, and real `zvonok worker` processes.

A school is on one messenger: `classes` classes, each with a parents' and a students' chat there, one bot
token; `letters` parents of the school get a letter each. An announcement to the whole school (parents and
students) is then 2 x `classes` chat deliveries and `letters` e-mails. It is a force majeure, so the
messaging window and the calendar never hold it back, whenever the run happens.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import yaml

from adapters.emulators.max import MaxEmulator
from adapters.emulators.smtp import SmtpEmulator
from adapters.emulators.vk import VkEmulator
from gateway.domain import AnnouncementRequest
from tests.region import closure

LETTERS = "АБВГДЕЖЗИКЛМНОПРСТУФХЦЧШЩЭЮЯ"  # 28 letters x 11 parallels = 308 class names
VK_PEER_OFFSET = 2_000_000_000
ROOT = Path(__file__).resolve().parent.parent
WORKER_BANNER = "обработчик рассылки работает"
BANNERS = {"worker": WORKER_BANNER, "serve": "Zvonok работает"}


@dataclass(frozen=True)
class SchoolSpec:
    id: str
    number: int  # 1, 2, …: keeps chat ids apart between schools
    channel: str  # "max" | "vk"
    token: str
    classes: int
    letters: int

    def class_names(self) -> list[str]:
        names = [f"{parallel}{letter}" for parallel in range(1, 12) for letter in LETTERS]
        if self.classes > len(names):
            raise ValueError(f"at most {len(names)} classes")
        return names[: self.classes]

    def chat(self, index: int, kind: str) -> int:
        """The class's chat: a MAX chat_id, or the VK chat number (its peer_id less 2000000000)."""
        number = self.number * 1000 + 2 * index + (1 if kind == "parents" else 2)
        return -(72_000_000_000_000 + number) if self.channel == "max" else number

    def chats(self) -> list[int]:
        """Every chat as it is addressed: MAX chat ids, VK peer ids."""
        found = [self.chat(i, kind) for i in range(self.classes) for kind in ("parents", "students")]
        return found if self.channel == "max" else [VK_PEER_OFFSET + c for c in found]

    def mailboxes(self) -> list[str]:
        return [f"{self.id}-parent{j}@mail.test" for j in range(self.letters)]

    @property
    def deliveries(self) -> int:
        return 2 * self.classes + self.letters


def write_config(root: Path, specs: list[SchoolSpec], settings: dict[str, Any]) -> Path:
    """`zvonok.yaml` (the given settings) and a school file and roster per school."""
    (root / "schools").mkdir(parents=True, exist_ok=True)
    (root / "rosters").mkdir(exist_ok=True)
    (root / "zvonok.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    for spec in specs:
        address = "chat_id" if spec.channel == "max" else "peer_id"

        def where(index: int, kind: str, spec: SchoolSpec = spec) -> int:
            chat = spec.chat(index, kind)
            return chat if spec.channel == "max" else VK_PEER_OFFSET + chat

        school = {
            "id": spec.id,
            "name": f"Школа № {spec.number} (нагрузка)",
            "timezone": "Europe/Moscow",
            spec.channel: {"token": spec.token},
            "staff": [{"id": "dir", "name": "Директорова Анна", "role": "director"}],
            "classes": [
                {
                    "name": name,
                    "chats": {
                        "parents": {"channel": spec.channel, address: where(i, "parents")},
                        "students": {"channel": spec.channel, address: where(i, "students")},
                    },
                }
                for i, name in enumerate(spec.class_names())
            ],
        }
        (root / "schools" / f"{spec.id}.yaml").write_text(
            yaml.safe_dump(school, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        names = spec.class_names()
        rows = ["Класс;Ученик;Представитель;E-mail;Телефон;В чате"]
        for j, mailbox in enumerate(spec.mailboxes()):
            rows.append(f"{names[j % len(names)]};Ученик Номер{j};Родитель Номер{j};{mailbox};;нет")
        (root / "rosters" / f"{spec.id}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@asynccontextmanager
async def providers(*, max_rate: float = 30, vk_rate: int = 20) -> AsyncIterator[tuple[Any, Any]]:
    """The MAX and VK emulators in a process of their own, as a provider is a system of its own: the moment a
    request arrives (what their per-second limits count) is then not held up by what the caller's process does
    meanwhile (the SMTP emulator reading letters, its garbage collection). The two objects yielded stand for
    them: their methods and attributes are called there, over a pipe (arguments and answers are pickled).
    """
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_providers, args=(child, max_rate, vk_rate), name="providers", daemon=True
    )
    process.start()
    try:
        ready = await asyncio.to_thread(parent.poll, 60)
        if not ready or parent.recv() != "ready":
            raise RuntimeError("the emulators did not start")
        lock = threading.Lock()
        yield _Remote(parent, lock, "max"), _Remote(parent, lock, "vk")
    finally:
        if process.is_alive():
            parent.send(None)
            await asyncio.to_thread(process.join, 30)
        process.kill()


class _Remote:
    """An emulator in the providers' process: reading an attribute or calling a method asks it over the pipe."""

    def __init__(self, conn: Connection, lock: threading.Lock, name: str) -> None:
        self._conn, self._lock, self._name = conn, lock, name

    def _ask(self, op: str, attr: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        with self._lock:
            self._conn.send((op, self._name, attr, args, kwargs or {}))
            kind, value = self._conn.recv()
        if kind == "error":
            raise value
        return value

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        if self._ask("get", attr) == "<method>":
            return lambda *args, **kwargs: self._ask("call", attr, args, kwargs)
        return self._ask("value", attr)


def _serve_providers(conn: Connection, max_rate: float, vk_rate: int) -> None:
    async def main() -> None:
        async with MaxEmulator(rate_limit=max_rate) as max_api, VkEmulator(rate_limit=vk_rate) as vk_api:
            emulators: dict[str, Any] = {"max": max_api, "vk": vk_api}
            loop = asyncio.get_running_loop()
            conn.send("ready")
            while (request := await loop.run_in_executor(None, conn.recv)) is not None:
                op, name, attr, args, kwargs = request
                try:
                    value = getattr(emulators[name], attr)
                    if op == "get":
                        answer = "<method>" if callable(value) else "<value>"
                    else:
                        answer = value(*args, **kwargs) if op == "call" else value
                    conn.send(("ok", answer))
                except Exception as exc:
                    conn.send(("error", exc))

    asyncio.run(main())


def populate(specs: list[SchoolSpec], max_api: MaxEmulator, vk_api: VkEmulator) -> None:
    """The schools' bots and chats on the emulators."""
    for spec in specs:
        if spec.channel == "max":
            max_api.add_bot(spec.token, f"Бот школы № {spec.number}")
            for chat_id in spec.chats():
                max_api.add_chat(chat_id, f"Чат {chat_id}", token=spec.token)
        else:
            vk_api.add_community(spec.token, spec.number)
            for peer in spec.chats():
                vk_api.add_chat(peer - VK_PEER_OFFSET, f"Чат {peer}", group_id=spec.number)


def announcement(spec: SchoolSpec, key: str = "fleet") -> AnnouncementRequest:
    """The school's whole-school force majeure (tests/region.py `closure`)."""
    return closure(spec.id, key)


@dataclass
class Counts:
    """What the emulators received: messages per chat and letters per mailbox (copies, and distinct ones)."""

    per_chat: dict[int, int]
    copies: dict[str, int]
    distinct: dict[str, int]
    rate_limited: dict[str, int]  # per token: MAX 429s, VK error 6
    requests: dict[str, int]


def received(specs: list[SchoolSpec], max_api: MaxEmulator, vk_api: VkEmulator, smtp: SmtpEmulator) -> Counts:
    per_chat: dict[int, int] = {}
    limited: dict[str, int] = {}
    requests: dict[str, int] = {}
    for spec in specs:
        api = max_api if spec.channel == "max" else vk_api
        for chat in spec.chats():
            per_chat[chat] = len(api.messages(chat))
        if spec.channel == "max":
            limited[spec.token] = max_api.rate_limited_count(spec.token)
            requests[spec.token] = max_api.request_count(spec.token)
        else:
            limited[spec.token] = vk_api.rate_limit_errors(spec.token)
            requests[spec.token] = vk_api.requests(spec.token)
    copies: dict[str, int] = {}
    ids: dict[str, set[str]] = {}
    for mail in smtp.messages:
        for rcpt in mail.recipients:
            copies[rcpt] = copies.get(rcpt, 0) + 1
            ids.setdefault(rcpt, set()).add(str(mail.message.get("Message-ID", "")))
    return Counts(per_chat, copies, {k: len(v) for k, v in ids.items()}, limited, requests)


@dataclass
class Worker:
    """A `zvonok worker` process; its output goes to files (a pipe nobody reads would stall it)."""

    number: int
    process: asyncio.subprocess.Process
    out: Path
    err: Path
    files: list[IO[bytes]] = field(default_factory=list)
    banner: str = WORKER_BANNER  # what it prints once it runs

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    @property
    def up(self) -> bool:
        """It has said it runs (and it may have died since: see `process.returncode`)."""
        return self.banner in self.out.read_text(encoding="utf-8", errors="replace")

    async def started(self, within: float = 60) -> None:
        """Until the worker says it runs."""
        for _ in range(int(within / 0.05)):
            if self.up:
                return
            if self.process.returncode is not None:
                raise RuntimeError(f"worker {self.number} exited {self.process.returncode}: {self.stderr()}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"worker {self.number} did not start: {self.stderr()}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def stop(self, within: float = 30) -> int:
        """SIGTERM, and its exit code (a worker that was killed says so: -9)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), within)
        for f in self.files:
            f.close()
        return code


async def start_worker(
    number: int, config: Path, folder: Path, env: dict[str, str], *, command: str = "worker", verbose: bool = False
) -> Worker:
    """`zvonok worker` (or `zvonok serve`: `command`), its output in `folder`; `verbose`: its log at INFO (-v)."""
    out, err = folder / f"{command}{number}.out", folder / f"{command}{number}.err"
    files: list[IO[bytes]] = [out.open("wb"), err.open("wb")]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *(["-v"] if verbose else []),
        command,
        "--config",
        str(config),
        stdout=files[0],
        stderr=files[1],
        env={**os.environ, **env},
        cwd=ROOT,
    )
    return Worker(number, process, out, err, files, BANNERS[command])


def fill_disk(folder: Path) -> Path:
    """Write a file in `folder` until its file system is full (a small tmpfs); the file, to remove again."""
    filler = folder / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler
