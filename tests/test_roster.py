"""Roster CSV: journal exports in their real shapes are read; every bad row is a clear Russian problem."""

from __future__ import annotations

import pytest

from gateway.config import Config
from gateway.errors import InvalidInput
from gateway.roster import group_guardians, guardian_key, parse_roster
from tests.data import ROSTER_CSV

HEADER = "Класс;Ученик;Представитель;E-mail;Телефон;В чате\n"


def test_reads_the_demo_shape(config: Config) -> None:
    roster = parse_roster(ROSTER_CSV.encode(), config.schools["s1"])
    assert len(roster.entries) == 6
    first = roster.entries[0]
    assert (first.class_name, first.student, first.guardian, first.email, first.phone, first.in_chat) == (
        "5А",
        "Иванов Петя",
        "Иванова Мария",
        "maria@mail.test",
        "+79000000001",
        True,
    )
    # Иванова Мария has children in 5А and 5Б under one e-mail: one guardian, in the 5А chat only.
    guardians = {g.name: g for g in roster.guardians("s1")}
    assert len(guardians) == 5
    assert guardians["Иванова Мария"].classes == {"5А": True, "5Б": False}


def test_windows_1251_comma_separated_english_header(config: Config) -> None:
    text = "class,student,guardian,email,phone,in_chat\n5а,Петров Коля,Петрова Анна,Anna@Mail.Test,89000000002,no\n"
    roster = parse_roster(text.encode("cp1251"), config.schools["s1"])
    entry = roster.entries[0]
    assert (entry.class_name, entry.email, entry.phone, entry.in_chat) == (
        "5А",
        "anna@mail.test",
        "+79000000002",
        False,
    )


def test_bom_and_columns_in_any_order_phone_optional(config: Config) -> None:
    text = "В чате;E-mail;Представитель;Ученик;Класс\nда;a@b.ru;Аня;Боря;7Б\n"
    roster = parse_roster(("\ufeff" + text).encode(), config.schools["s1"])
    assert roster.entries[0].guardian == "Аня"
    assert roster.entries[0].phone == ""


BAD_ROWS = [
    ("unknown class", "9Я;Ученик;Родитель;a@b.ru;;да", "класса 9Я нет в описании школы", "Класс"),
    ("not a class", "пятый;Ученик;Родитель;a@b.ru;;да", "«пятый» не похоже на класс", "Класс"),
    ("no class", ";Ученик;Родитель;a@b.ru;;да", "не указан класс", "Класс"),
    ("no student", "5А;;Родитель;a@b.ru;;да", "не указан ученик", "Ученик"),
    ("no guardian", "5А;Ученик;;a@b.ru;;да", "не указан представитель", "Представитель"),
    ("bad e-mail", "5А;Ученик;Родитель;a@b;;да", "«a@b» — не адрес электронной почты", "E-mail"),
    (
        "header injection in e-mail",
        '5А;Ученик;Родитель;"a@b.ru\nBcc: x@y.ru";;да',
        "не адрес электронной почты",
        "E-mail",
    ),
    ("bad flag", "5А;Ученик;Родитель;a@b.ru;;может быть", "«может быть»: ожидается «да» или «нет»", "В чате"),
    ("bad phone", "5А;Ученик;Родитель;a@b.ru;позвонить маме;да", "не номер телефона", "Телефон"),
]


@pytest.mark.parametrize(("row", "fragment", "field"), [c[1:] for c in BAD_ROWS], ids=[c[0] for c in BAD_ROWS])
def test_bad_row_is_reported_with_line_and_field(config: Config, row: str, fragment: str, field: str) -> None:
    good = "5А;Иванов Петя;Иванова Мария;maria@mail.test;;да"
    with pytest.raises(InvalidInput) as caught:
        parse_roster((HEADER + good + "\n" + row + "\n").encode(), config.schools["s1"], source="журнал.csv")
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    assert fragment in problems[0].message
    assert problems[0].line == 3
    assert problems[0].field == field
    assert str(problems[0]).startswith("журнал.csv, строка 3, поле «")


def test_missing_columns_are_named(config: Config) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_roster("Класс;Ученик\n5А;Петя\n".encode(), config.schools["s1"])
    message = str(caught.value)
    assert "нет столбцов: Представитель, E-mail, В чате" in message
    assert "строка 1" in message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "файл пуст"),
        (HEADER.encode(), "нет ни одной строки с данными"),
        (b"\x00\x01\x02binary\xff\xfe" * 10, "не текстовый файл"),
        ((HEADER + '5А;"незакрытая кавычка;x;a@b.ru;;да\n').encode(), "CSV"),
    ],
    ids=["empty", "header only", "binary", "broken quoting"],
)
def test_unusable_files(config: Config, data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_roster(data, config.schools["s1"])


def test_all_problems_at_once(config: Config) -> None:
    rows = ["9Я;У;Р;a@b.ru;;да", "5А;;Р;a@b.ru;;да", "5А;У;Р;bad;;да"]
    with pytest.raises(InvalidInput) as caught:
        parse_roster((HEADER + "\n".join(rows) + "\n").encode(), config.schools["s1"])
    assert [p.line for p in caught.value.problems] == [2, 3, 4]


def test_warnings_do_not_stop_the_import(config: Config) -> None:
    rows = [
        "7Б;Ученик;Родитель;a@b.ru;;да",  # 7Б has no parents' chat
        "5А;Ученик2;Без Связи;;;нет",  # neither chat nor e-mail
        "5А;Ученик2;Без Связи;;;нет",  # duplicate row
    ]
    roster = parse_roster((HEADER + "\n".join(rows) + "\n").encode(), config.schools["s1"])
    assert len(roster.entries) == 2
    texts = [w.message for w in roster.warnings]
    assert any("не подключён чат родителей" in t for t in texts)
    assert any("нет ни чата, ни e-mail" in t for t in texts)
    assert any("повторяет" in t for t in texts)


def test_guardian_keys_are_stable_and_carry_no_personal_data(config: Config) -> None:
    roster = parse_roster(ROSTER_CSV.encode(), config.schools["s1"])
    keys = [guardian_key("s1", e) for e in roster.entries]
    assert keys == [guardian_key("s1", e) for e in parse_roster(ROSTER_CSV.encode(), config.schools["s1"]).entries]
    for key, entry in zip(keys, roster.entries, strict=True):
        assert not entry.email or entry.email.split("@")[0] not in key
    # without e-mail, the same name in two classes is two people unless the phone matches
    no_mail = HEADER + "5А;Петя;Сидоров Олег;;;нет\n5Б;Вася;Сидоров Олег;;;нет\n"
    assert len(group_guardians("s1", parse_roster(no_mail.encode(), config.schools["s1"]).entries)) == 2
    same_phone = HEADER + "5А;Петя;Сидоров Олег;;+79000000003;нет\n5Б;Вася;Сидоров Олег;;8 900 000 00 03;нет\n"
    assert len(group_guardians("s1", parse_roster(same_phone.encode(), config.schools["s1"]).entries)) == 1
