"""Dispatcher internals that are pure: how claimed deliveries are cut into chunks."""

from __future__ import annotations

from gateway.dispatcher import _chunks
from gateway.store.base import Claimed


def claimed(id_: int, bundle: int | None = None) -> Claimed:
    return Claimed(id_, 1, "max", "s1", f"-{id_}", "5А", "parents", "", 1, False, f"t{id_}", bundle=bundle)


def test_chunks_never_split_a_bundle() -> None:
    rows = [claimed(1), claimed(2, 2), claimed(3), claimed(4, 2), claimed(5, 2), claimed(6)]
    chunks = _chunks(rows, 2)
    assert [[c.id for c in chunk] for chunk in chunks] == [[1], [2, 4, 5], [3, 6]]


def test_a_bundle_larger_than_a_chunk_stays_whole() -> None:
    rows = [claimed(i, 10) for i in range(10, 15)]
    assert [[c.id for c in chunk] for chunk in _chunks(rows, 2)] == [[10, 11, 12, 13, 14]]


def test_plain_deliveries_fill_chunks_in_order() -> None:
    rows = [claimed(i) for i in range(1, 8)]
    assert [[c.id for c in chunk] for chunk in _chunks(rows, 3)] == [[1, 2, 3], [4, 5, 6], [7]]
