"""Bad input, generated: the parsers of everything staff hand us (school files, roster exports, command-line
announcements) either accept the input or reject it with clear Russian problems — never another exception,
never a partial write (a file is parsed whole before anything is stored; see test_cli for the import).
"""

from __future__ import annotations

import argparse
import re
import string
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.cli import parse_request
from gateway.config import Config, load_config
from gateway.errors import InvalidInput, Problem
from gateway.roster import parse_roster
from tests.data import SCHOOL_YAML, ZVONOK_YAML, write_config

CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
CELL = st.text(alphabet=CYRILLIC + string.ascii_letters + string.digits + " @.+-;,\"'\n\r\t\x00№", max_size=30)
RUSSIAN = re.compile(r"[а-яё]", re.IGNORECASE)
FAST = settings(max_examples=150, deadline=None)

_BASE = Path(tempfile.mkdtemp(prefix="zvonok-props-"))
CONFIG: Config = load_config(write_config(_BASE / "config"))


def assert_clear(problems: list[Problem]) -> None:
    assert problems
    for problem in problems:
        assert RUSSIAN.search(problem.message), problem
        assert problem.source
        assert "Traceback" not in str(problem)


def rows_to_csv(rows: list[list[str]], delimiter: str) -> str:
    def quote(cell: str) -> str:
        return '"' + cell.replace('"', '""') + '"' if any(c in cell for c in delimiter + '"\n\r') else cell

    return "\n".join(delimiter.join(quote(c) for c in row) for row in rows)


@FAST
@given(st.binary(max_size=2000))
def test_any_bytes_as_a_roster(data: bytes) -> None:
    try:
        roster = parse_roster(data, CONFIG.schools["s1"])
    except InvalidInput as exc:
        assert_clear(exc.problems)
        return
    assert roster.entries
    assert all(e.class_name in CONFIG.schools["s1"].classes for e in roster.entries)


@FAST
@given(
    st.lists(st.lists(CELL, min_size=0, max_size=8), min_size=0, max_size=12),
    st.sampled_from([";", ",", "\t"]),
    st.sampled_from(["utf-8", "utf-8-sig", "cp1251"]),
)
def test_journal_shaped_rosters(rows: list[list[str]], delimiter: str, encoding: str) -> None:
    header = ["Класс", "Ученик", "Представитель", "E-mail", "Телефон", "В чате"]
    text = rows_to_csv([header, *rows], delimiter)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    try:
        roster = parse_roster(data, CONFIG.schools["s1"])
    except InvalidInput as exc:
        assert_clear(exc.problems)
        lines = len(re.split(r"\r\n|\r|\n", text))  # as the CSV reader counts them
        assert all(p.line is None or 1 <= p.line <= lines for p in exc.problems)
        return
    for entry in roster.entries:
        assert entry.student and entry.guardian
        assert "\n" not in entry.email and "\r" not in entry.email


YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**18), max_value=10**18),
    st.text(alphabet=CYRILLIC + string.ascii_letters + string.digits + " :-#{}[],&*!|>'\"%@`", max_size=20),
)


@FAST
@given(st.text(max_size=400))
@example("=")  # PyYAML's !!value tag once crashed the loader
@example("id: !foo bar")  # an unknown tag
def test_any_text_as_a_school_file(text: str) -> None:
    root = Path(tempfile.mkdtemp(dir=_BASE))
    write_config(root, school="", settings=ZVONOK_YAML)
    (root / "schools" / "s1.yaml").write_text(text, encoding="utf-8")
    try:
        load_config(root)
    except InvalidInput as exc:
        assert_clear(exc.problems)


@FAST
@given(st.integers(min_value=0, max_value=SCHOOL_YAML.count("\n") - 1), YAML_SCALARS)
def test_one_field_of_a_good_school_file_replaced(line: int, value: object) -> None:
    """Every line's value replaced by a random scalar: accepted, or rejected with the problem's line."""
    lines = SCHOOL_YAML.splitlines()
    key, sep, _ = lines[line].partition(":")
    if not sep:
        return
    lines[line] = f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}"
    root = Path(tempfile.mkdtemp(dir=_BASE))
    write_config(root, school="\n".join(lines) + "\n", settings=ZVONOK_YAML)
    try:
        load_config(root)
    except InvalidInput as exc:
        assert_clear(exc.problems)


@FAST
@given(
    kind=st.text(max_size=15),
    to=st.text(max_size=30),
    classes=st.text(max_size=30),
    parallels=st.text(max_size=15),
    at=st.one_of(st.just(""), st.text(max_size=30)),
    title=st.text(max_size=50),
)
@example(kind="general", to="parents", classes="", parallels="¹", at="", title="Т")  # isdigit() said yes
def test_command_line_announcements(kind: str, to: str, classes: str, parallels: str, at: str, title: str) -> None:
    args = argparse.Namespace(
        kind=kind,
        to=to,
        classes=classes,
        parallels=parallels,
        at=at,
        title=title,
        text="Текст",
        text_file=None,
        author="dep",
        key="",
        reason="",
        via_teachers=False,
    )
    try:
        request = parse_request(args, "s1")
    except InvalidInput as exc:
        assert_clear(exc.problems)
        return
    assert request.send_at is None or request.send_at.tzinfo is not None
