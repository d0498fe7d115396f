"""Splitting long texts for providers with a message-length limit (MAX 4000 characters, VK 4096 UTF-16 units).

A provider's limit is counted in its own unit: MAX's in characters, VK's in UTF-16 code units as its web client
counts (an emoji outside the Basic Multilingual Plane is two), so `units` says how to measure. Parts break at the
strongest boundary in the second half of the window: a blank line (paragraph), then a line break, then the end of
a sentence, then a space; only where none is there is a word cut. Parts keep their order and, joined back, say the
same thing: no text is dropped apart from the whitespace at the cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_SENTENCE_END = re.compile(r"[.!?…;:][)»\"']*\s+")


def utf16_length(text: str) -> int:
    """The length of `text` in UTF-16 code units (what JavaScript's `length` says)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def split_text(text: str, limit: int, *, units: Callable[[str], int] = len) -> list[str]:
    """Split `text` into parts of at most `limit` units (characters by default), at the strongest boundary."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.strip()
    parts: list[str] = []
    while units(text) > limit:
        cut = _best_cut(text, _fitting(text, limit, units))
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:
            parts.append(head)
    if text:
        parts.append(text)
    return parts


def _fitting(text: str, limit: int, units: Callable[[str], int]) -> int:
    """How many characters of `text` (at least one) fit in `limit` units."""
    if units is len:
        return limit
    used = 0
    for index, ch in enumerate(text):
        used += units(ch)
        if used > limit:
            return max(index, 1)
    return len(text)


def _best_cut(text: str, limit: int) -> int:
    """The index to cut `text` at so that the head is at most `limit` characters.

    A boundary counts only in the second half of the window, so that a heading followed by one long paragraph
    does not become a part of its own; a weaker boundary further on is better than a tiny part.
    """
    window = text[: limit + 1]
    floor = limit // 2
    for boundary in ("\n\n", "\n"):
        at = window.rfind(boundary)
        if at >= floor:
            return at + len(boundary)
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(window) if floor <= m.end() <= limit + 1]
    if sentence_ends:
        return sentence_ends[-1]
    at = window.rfind(" ")
    if at >= floor:
        return at + 1
    return limit
