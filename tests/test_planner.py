"""The planner's coverage rules, table-driven over audiences, chat states and rosters.

The school (tests/data.py): 5А has MAX parents' and students' chats; 5Б a VK parents' chat only; 7Б no chats.
The roster: Мария (maria@) is in the 5А chat and has a child in 5Б (not in its chat); Анна (5А) is not in the
chat; Олег (5А) has no e-mail; Ольга is in the 5Б chat; Ирина (7Б) is marked in-chat but 7Б has no chat.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.config import Config
from gateway.domain import AnnouncementRequest, Audience, ChatBinding, ChatKind, Group, Guardian, Kind
from gateway.planner import Note, Plan, Route, plan
from gateway.roster import parse_roster
from tests.data import ROSTER_CSV

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


def guardians(config: Config) -> list[Guardian]:
    return parse_roster(ROSTER_CSV.encode(), config.schools["s1"]).guardians("s1")


def make_plan(
    config: Config,
    groups: set[Group],
    *,
    parallels: set[int] = frozenset(),  # type: ignore[assignment]
    classes: set[str] = frozenset(),  # type: ignore[assignment]
    dead: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
    people: list[Guardian] | None = None,
) -> Plan:
    request = AnnouncementRequest(
        "s1",
        "dep",
        Kind.GENERAL,
        "Заголовок",
        "Текст",
        Audience(frozenset(groups), frozenset(parallels), frozenset(classes)),
    )
    return plan(
        config.schools["s1"],
        request,
        guardians(config) if people is None else people,
        dead_chats=dead,
        earliest=lambda chat, class_name: NOW,
    )


def summary(p: Plan, config: Config) -> dict[str, object]:
    """The plan as plain data: chat targets, e-mail targets, who is reached how, and gaps."""
    names = {g.key: g.name for g in guardians(config)}
    return {
        "chats": sorted(
            f"{d.class_name or '-'}:{d.chat_kind}:{d.channel}" for d in p.deliveries if d.channel != "email"
        ),
        "emails": sorted(d.target for d in p.deliveries if d.channel == "email"),
        "routes": sorted(
            f"{c.class_name or '-'}:{names.get(c.person, c.person)}:{c.route}:{c.note}" for c in p.coverage
        ),
        "gaps": sorted(f"{g.class_name or '-'}:{g.chat_kind}:{g.note}" for g in p.gaps),
    }


CASES = [
    (
        "whole school, parents",
        dict(groups={Group.PARENTS}),
        {
            "chats": ["5А:parents:max", "5Б:parents:vk"],
            "emails": ["anna@mail.test", "irina@mail.test"],
            "routes": [
                "5А:Иванова Мария:chat:in_chat",
                "5А:Петрова Анна:email:not_in_chat",
                "5А:Сидоров Олег:none:not_in_chat",
                "5Б:Иванова Мария:chat:in_other_chat",
                "5Б:Кузнецова Ольга:chat:in_chat",
                "7Б:Смирнова Ирина:email:no_chat",
            ],
            "gaps": ["7Б:parents:no_chat"],
        },
    ),
    (
        "only 5Б: the 5А chat does not reach Мария's 5Б child",
        dict(groups={Group.PARENTS}, classes={"5Б"}),
        {
            "chats": ["5Б:parents:vk"],
            "emails": ["maria@mail.test"],
            "routes": ["5Б:Иванова Мария:email:not_in_chat", "5Б:Кузнецова Ольга:chat:in_chat"],
            "gaps": [],
        },
    ),
    (
        "students only: chats, no guardians",
        dict(groups={Group.STUDENTS}),
        {
            "chats": ["5А:students:max"],
            "emails": [],
            "routes": [],
            "gaps": ["5Б:students:no_chat", "7Б:students:no_chat"],
        },
    ),
    (
        "parallel 5, parents and students",
        dict(groups={Group.PARENTS, Group.STUDENTS}, parallels={5}),
        {
            "chats": ["5А:parents:max", "5А:students:max", "5Б:parents:vk"],
            "emails": ["anna@mail.test"],
            "routes": [
                "5А:Иванова Мария:chat:in_chat",
                "5А:Петрова Анна:email:not_in_chat",
                "5А:Сидоров Олег:none:not_in_chat",
                "5Б:Иванова Мария:chat:in_other_chat",
                "5Б:Кузнецова Ольга:chat:in_chat",
            ],
            "gaps": ["5Б:students:no_chat"],
        },
    ),
    (
        "5А parents' chat dead: everyone there by e-mail, one per mailbox",
        dict(groups={Group.PARENTS}, parallels={5}, dead={("max", "-501")}),
        {
            "chats": ["5Б:parents:vk"],
            "emails": ["anna@mail.test", "maria@mail.test"],
            "routes": [
                "5А:Иванова Мария:email:chat_dead",
                "5А:Петрова Анна:email:chat_dead",
                "5А:Сидоров Олег:none:chat_dead",
                "5Б:Иванова Мария:email:not_in_chat",
                "5Б:Кузнецова Ольга:chat:in_chat",
            ],
            "gaps": ["5А:parents:chat_dead"],
        },
    ),
    (
        "teachers: the teachers' chat",
        dict(groups={Group.TEACHERS}),
        {
            "chats": ["-:teachers:max"],
            "emails": [],
            "routes": [f"-:staff:{s}:chat:in_chat" for s in ("dep", "dir", "it", "kt5a", "kt7b")],
            "gaps": [],
        },
    ),
    (
        "teachers' chat dead: staff with e-mail get letters, the rest unreachable",
        dict(groups={Group.TEACHERS}, dead={("max", "-100")}),
        {
            "chats": [],
            "emails": ["dir@s1.test", "kt5a@s1.test"],
            "routes": [
                "-:staff:dep:none:chat_dead",
                "-:staff:dir:email:chat_dead",
                "-:staff:it:none:chat_dead",
                "-:staff:kt5a:email:chat_dead",
                "-:staff:kt7b:none:chat_dead",
            ],
            "gaps": ["-:teachers:chat_dead"],
        },
    ),
]


@pytest.mark.parametrize(("kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_coverage_rules(config: Config, kwargs: dict[str, object], expected: dict[str, object]) -> None:
    p = make_plan(config, **kwargs)  # type: ignore[arg-type]
    assert summary(p, config) == expected
    # every coverage line that routes somewhere points at a delivery of that route's channel
    for c in p.coverage:
        if c.route is Route.NONE:
            assert c.delivery is None
        else:
            assert c.delivery is not None
            assert (p.deliveries[c.delivery].channel == "email") == (c.route is Route.EMAIL)


def test_opted_out_guardian_is_unreachable_not_dropped(config: Config) -> None:
    people = [g._replace(opted_out=True) if g.name == "Петрова Анна" else g for g in guardians(config)]
    p = make_plan(config, {Group.PARENTS}, classes={"5А"}, people=people)
    anna = [c for c in p.coverage if c.email == "anna@mail.test"]
    assert [(c.route, c.note) for c in anna] == [(Route.NONE, Note.NOT_IN_CHAT)]
    assert "anna@mail.test" not in [d.target for d in p.deliveries]


def test_shared_mailbox_gets_one_letter(config: Config) -> None:
    people = [
        Guardian("k1", "Мама", "family@mail.test", "", False, {"5А": False}),
        Guardian("k2", "Папа", "family@mail.test", "", False, {"5А": False, "5Б": False}),
    ]
    p = make_plan(config, {Group.PARENTS}, people=people)
    assert [d.target for d in p.deliveries if d.channel == "email"] == ["family@mail.test"]
    assert len(p.coverage) == 3
    assert len({c.delivery for c in p.coverage}) == 1


def test_chats_come_first_and_times_come_from_earliest(config: Config) -> None:
    school = config.schools["s1"]
    audience = Audience(frozenset({Group.PARENTS, Group.TEACHERS}))
    request = AnnouncementRequest("s1", "dep", Kind.GENERAL, "З", "Т", audience)

    def earliest(chat: ChatBinding | None, class_name: str) -> datetime:
        return NOW + timedelta(hours=1 if chat is not None else 0, minutes=5 if class_name == "5Б" else 0)

    p = plan(school, request, guardians(config), dead_chats=set(), earliest=earliest)
    channels = [d.channel for d in p.deliveries]
    assert channels == sorted(channels, key=lambda c: c == "email")
    assert ChatKind.TEACHERS in {d.chat_kind for d in p.deliveries}  # the teachers' chat is among the chats first
    for line in p.coverage:  # and every line still points at its own chat or letter
        if line.delivery is None:
            continue
        delivery = p.deliveries[line.delivery]
        if line.route is Route.EMAIL:
            assert delivery.target == line.email
        elif line.person.startswith("staff:"):
            assert delivery.chat_kind is ChatKind.TEACHERS
        else:
            assert delivery.chat_kind is ChatKind.PARENTS
    times = {(d.channel, d.class_name): d.not_before for d in p.deliveries}
    assert times[("max", "5А")] == NOW + timedelta(hours=1)
    assert times[("vk", "5Б")] == NOW + timedelta(hours=1, minutes=5)
    assert times[("email", "5А")] == NOW


def test_nobody_is_dropped(config: Config) -> None:
    """Every guardian of every audience class appears in the coverage, whatever their channel."""
    p = make_plan(config, {Group.PARENTS})
    expected = {(g.key, c) for g in guardians(config) for c in g.classes}
    assert {(c.person, c.class_name) for c in p.coverage} == expected
    assert ChatKind.PARENTS in {g.chat_kind for g in p.gaps}
