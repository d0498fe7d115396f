"""The durable store: the contract (`base`) and its backends, chosen by URL."""

from __future__ import annotations

import sqlite3
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


def unavailable(exc: BaseException) -> str | None:
    """What is wrong, in Russian, when `exc` says the database cannot be used right now (a full disk, a server
    that is down or restarting, a file that cannot be opened); None for any other error. The CLI exits with its
    own code on it, the web answers 503, the dispatcher waits: nothing is lost, the work waits in the store."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if "full" in text:
            return "диск с базой данных SQLite заполнен: освободите место"
        if "locked" in text or "busy" in text:
            return "база данных SQLite занята другим процессом: повторите чуть позже"
        if "disk i/o" in text:
            return "диск с базой данных SQLite не даёт писать (заполнен или неисправен): проверьте место на диске"
        if "unable to open" in text or "readonly" in text:
            return "файл базы данных SQLite не открывается на запись: проверьте права и диск"
        return None
    import psycopg
    import psycopg_pool

    state = (exc.sqlstate or "") if isinstance(exc, psycopg.Error) else ""
    if state.startswith("53"):
        return "у сервера PostgreSQL нет места на диске или памяти: освободите место"
    if state.startswith("57P"):
        return "сервер PostgreSQL перезапускается или остановлен: повторите чуть позже"
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError) or state.startswith("08"):
        return "сервер PostgreSQL недоступен: проверьте, что он запущен и принимает подключения"
    return None
