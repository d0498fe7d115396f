"""The durable store: the contract (`base`) and its backends, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ZvonokError
from gateway.store.base import Store


async def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """Open the store a URL names: `sqlite:///relative/or/absolute.db` (relative to `base_dir`), or a libpq URL
    `postgresql://user@host:5432/dbname` (also `postgres://`; `?options=-csearch_path%3Dschema` picks a schema).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return await SqliteStore.open(path)
    raise ZvonokError(f"адрес базы данных «{url.split(':', 1)[0]}:…» не поддерживается; пример: sqlite:///zvonok.db")
