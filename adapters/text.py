"""Splitting long texts for providers with a message-length limit (MAX 4000, VK 4096 characters).

Parts break at the strongest boundary in the second half of the window: a blank line (paragraph), then a line
break, then the end of a sentence, then a space; only where none is there is a word cut. Parts keep their order and,
joined back, say the same thing: no text is dropped apart from the whitespace at the cut.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…;:][)»\"']*\s+")


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into parts of at most `limit` characters, at the strongest boundary available."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.strip()
    parts: list[str] = []
    while len(text) > limit:
        cut = _best_cut(text, limit)
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:
            parts.append(head)
    if text:
        parts.append(text)
    return parts


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
