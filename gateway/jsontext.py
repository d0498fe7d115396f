"""JSON from outside (the API's bodies, MAX's webhook calls), read with a nesting limit.

Python's parser recurses once per level: a body nested a hundred thousand deep raises RecursionError, and one
nested a few hundred deep parses into something no handler expects. Neither is a request any client of ours
sends, so both are refused as `ValueError`, which the callers answer with 400.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text; ValueError for one that is not JSON (or not UTF-8) or nests past `max_depth`."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    level = [value] if isinstance(value, dict | list) else []  # containers at one depth, level by level
    for _ in range(max_depth):
        level = [child for item in level for child in _children(item) if isinstance(child, dict | list)]
        if not level:
            return value
    raise ValueError("JSON nested too deep")


def _children(item: Any) -> Any:
    return item.values() if isinstance(item, dict) else item
