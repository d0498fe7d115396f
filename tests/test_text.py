"""Splitting long texts for the chat providers' length limits."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from adapters.text import split_text


def test_short_text_is_one_part() -> None:
    assert split_text("  Завтра уроки по 30 минут.  ", 4000) == ["Завтра уроки по 30 минут."]


def test_paragraphs_win_over_sentences() -> None:
    text = "Первый абзац. Ещё предложение.\n\nВторой абзац, длинный. " + "Слово " * 10
    parts = split_text(text, 60)
    assert parts[0] == "Первый абзац. Ещё предложение."


def test_a_heading_stays_with_its_paragraph() -> None:
    text = "Изменение расписания: уроки\n\n" + "Очень длинное предложение без конца " * 20
    parts = split_text(text, 200)
    assert parts[0].startswith("Изменение расписания: уроки\n\nОчень длинное")
    assert len(parts[0]) > 100


def test_sentence_boundary_then_space_then_hard_cut() -> None:
    assert split_text("Раз два три. Четыре пять шесть семь.", 20) == ["Раз два три.", "Четыре пять шесть", "семь."]
    assert split_text("а" * 25, 10) == ["а" * 10, "а" * 10, "а" * 5]


@given(st.text(min_size=0, max_size=3000), st.integers(min_value=5, max_value=500))
def test_parts_fit_and_lose_nothing_but_whitespace(text: str, limit: int) -> None:
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    squash = re.compile(r"\s+")
    assert squash.sub("", "".join(parts)) == squash.sub("", text)
