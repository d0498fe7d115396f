"""A synthetic region for benchmarks and long reliability runs (bench/region.py, reliability/): many schools, each
with its own MAX bot, classes with a parents' and a students' chat, and a roster shaped like a real one.

Per school (defaults: 300 schools, 30 classes, 25 students per class): each student has one or two guardians
(`two_guardians` of them two); one family in `siblings` has a second child in another class of the school (one
guardian, one mailbox, two roster rows); the school's share of guardians not in the class parents' chat is drawn
between `not_in_chat` bounds (15-30 %); `no_email` of guardians have no e-mail. Everything follows from `seed`.

A whole-school announcement to parents and students is then 2 x classes chat deliveries per school plus one
letter per mailbox whose guardian is in none of their classes' chats (the planner's rule); `Region.expected`
counts both from the generated roster itself, so a run can be checked against what the emulators received.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.emulators.max import MaxEmulator
from gateway.domain import AnnouncementRequest, Audience, Group, Kind

LETTERS = "АБВГДЕЖЗИКЛМНОПРСТУФХЦЧШЩЭЮЯ"
SURNAMES = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков")
FIRST = ("Анна", "Ольга", "Мария", "Елена", "Ирина", "Сергей", "Андрей", "Дмитрий", "Алексей", "Наталья")
CHILD = ("Артём", "Маша", "Лёва", "Катя", "Дима", "Соня", "Ваня", "Полина", "Миша", "Вера")
ZONES = ("Europe/Moscow", "Asia/Yekaterinburg", "Asia/Novosibirsk", "Europe/Samara", "Asia/Vladivostok")


@dataclass(frozen=True)
class RegionSpec:
    schools: int = 300
    classes: int = 30
    students: int = 25
    two_guardians: float = 0.5  # share of students with two guardians (1-2 each)
    siblings: float = 0.05  # share of students who are a second child of a family already in the school
    not_in_chat: tuple[float, float] = (0.15, 0.30)  # per school, drawn between
    no_email: float = 0.04
    seed: int = 2026


@dataclass
class SchoolPlan:
    id: str
    number: int
    token: str
    zone: str
    chats: list[int]  # MAX chat ids
    letters: set[str]  # the mailboxes that get a letter for a whole-school announcement
    unreachable: int  # guardians in no chat and with no e-mail
    guardians: int
    rows: int


@dataclass
class Region:
    spec: RegionSpec
    root: Path
    schools: list[SchoolPlan] = field(default_factory=list)

    @property
    def chats(self) -> int:
        return sum(len(s.chats) for s in self.schools)

    @property
    def letters(self) -> int:
        return sum(len(s.letters) for s in self.schools)

    @property
    def guardians(self) -> int:
        return sum(s.guardians for s in self.schools)

    @property
    def deliveries(self) -> int:
        return self.chats + self.letters

    def populate(self, max_api: MaxEmulator) -> None:
        """Every school's bot and chats on the MAX emulator."""
        for school in self.schools:
            max_api.add_bot(school.token, f"Бот школы № {school.number}")
            for chat_id in school.chats:
                max_api.add_chat(chat_id, f"Чат {chat_id}", token=school.token)


def class_names(count: int) -> list[str]:
    names = [f"{parallel}{letter}" for letter in LETTERS for parallel in range(1, 12)]
    if count > len(names):
        raise ValueError(f"at most {len(names)} classes")
    return sorted(names[:count], key=lambda n: (int(n[:-1]), n[-1]))


def chat_id(school: int, index: int, kind: str) -> int:
    return -(72_000_000_000_000 + school * 1000 + 2 * index + (1 if kind == "parents" else 2))


def write_region(root: Path, spec: RegionSpec, settings: dict[str, Any]) -> Region:
    """The region's configuration folder: `zvonok.yaml` (`settings`), a school file and a roster per school."""
    (root / "schools").mkdir(parents=True, exist_ok=True)
    (root / "rosters").mkdir(exist_ok=True)
    (root / "zvonok.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    rng = random.Random(spec.seed)
    region = Region(spec, root)
    names = class_names(spec.classes)
    for number in range(1, spec.schools + 1):
        school_id = f"r{number:03d}"
        token = f"max-token-{school_id}"
        zone = ZONES[number % len(ZONES)]
        school = {
            "id": school_id,
            "name": f"Школа № {number}",
            "timezone": zone,
            "max": {"token": token},
            "staff": [
                {"id": "dir", "name": "Директорова Анна", "role": "director"},
                {"id": "dep", "name": "Завучева Ольга", "role": "deputy"},
            ],
            "classes": [
                {
                    "name": name,
                    "chats": {
                        "parents": {"channel": "max", "chat_id": chat_id(number, i, "parents")},
                        "students": {"channel": "max", "chat_id": chat_id(number, i, "students")},
                    },
                }
                for i, name in enumerate(names)
            ],
        }
        (root / "schools" / f"{school_id}.yaml").write_text(
            yaml.safe_dump(school, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        region.schools.append(_roster(root, spec, rng, number, school_id, token, zone, names))
    return region


def _roster(
    root: Path,
    spec: RegionSpec,
    rng: random.Random,
    number: int,
    school_id: str,
    token: str,
    zone: str,
    names: list[str],
) -> SchoolPlan:
    outside = rng.uniform(*spec.not_in_chat)
    families: list[list[tuple[str, str]]] = []  # each family: its guardians as (name, e-mail)
    in_chat: dict[tuple[str, str], bool] = {}  # (guardian e-mail or name, class) -> in the class's parents' chat
    lines = ["Класс;Ученик;Представитель;E-mail;Телефон;В чате"]
    seen: dict[str, tuple[str, str]] = {}  # guardian id -> (name, e-mail)
    classes_of: dict[str, set[str]] = {}
    for class_name in names:
        for s in range(spec.students):
            child = f"{rng.choice(SURNAMES)} {rng.choice(CHILD)} {class_name}-{s}"
            if families and rng.random() < spec.siblings:
                family = rng.choice(families)
            else:
                family = []
                for _ in range(2 if rng.random() < spec.two_guardians else 1):
                    n = len(seen) + len(family)
                    name = f"{rng.choice(SURNAMES)}а {rng.choice(FIRST)} №{n}"
                    email = "" if rng.random() < spec.no_email else f"{school_id}.p{n}@mail.test"
                    family.append((name, email))
                families.append(family)
            for name, email in family:
                gid = email or f"{name}|{class_name}"  # as the gateway tells guardians apart (no phone here)
                seen[gid] = (name, email)
                classes_of.setdefault(gid, set()).add(class_name)
                member = in_chat.setdefault((gid, class_name), rng.random() >= outside)
                lines.append(f"{class_name};{child};{name};{email};;{'да' if member else 'нет'}")
    (root / "rosters" / f"{school_id}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    letters: set[str] = set()
    unreachable = 0
    for gid, (_, email) in seen.items():
        if any(in_chat[(gid, c)] for c in classes_of[gid]):
            continue
        if email:
            letters.add(email)
        else:
            unreachable += 1
    chats = [chat_id(number, i, kind) for i in range(len(names)) for kind in ("parents", "students")]
    return SchoolPlan(school_id, number, token, zone, chats, letters, unreachable, len(seen), len(lines) - 1)


def closure(school_id: str, key: str = "closure") -> AnnouncementRequest:
    """A whole-school force majeure to parents and students: every chat and every letter, at any hour."""
    return AnnouncementRequest(
        school_id=school_id,
        author="dir",
        kind=Kind.FORCE_MAJEURE,
        title="Актированный день",
        text="Из-за мороза −38 °C занятия 1–11 классов сегодня отменены. Задания — в электронном дневнике.",
        audience=Audience(frozenset({Group.PARENTS, Group.STUDENTS})),
        idempotency_key=key,
        reason="мороз −38 °C",
    )
