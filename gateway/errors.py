"""The gateway's exception root. Messages are Russian: they are shown to school staff as they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ZvonokError(Exception):
    """Root of every error the gateway raises on purpose; `str()` is a complete Russian sentence."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file: where (file, line, field) and what, in Russian."""

    source: str
    message: str
    line: int | None = None
    field: str = ""

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f", строка {self.line}"
        if self.field:
            where += f", поле «{self.field}»"
        return f"{where}: {self.message}"


class InvalidInput(ZvonokError):
    """A configuration or roster file (or a request) was rejected; nothing was changed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class Unprocessable(InvalidInput):
    """Well-formed input whose values cannot be acted on: a control character in a text, a send time outside any
    school year (the web answers 422, not 400)."""


class PolicyViolation(ZvonokError):
    """The school's rules forbid what was asked (who may post where, banned channels, content)."""


class NotFound(ZvonokError):
    """The thing asked for does not exist."""


class Conflict(ZvonokError):
    """The request contradicts one made before (an idempotency key reused for another announcement)."""
