"""Moving an installation from SQLite to PostgreSQL: `zvonok store copy --from sqlite:///… --to postgresql://…`.

Everything is copied, every table of the SQLite file, into an empty PostgreSQL database (or schema), in one
transaction on the target: it has all of it or nothing.

- Both stores are opened first, so that both schemas are migrated forward to this version of Zvonok and have
  the same tables. A table or column the source has and the target lacks is an error (nothing is changed);
  tables only PostgreSQL has (`rate_buckets`) stay empty.
- The target must be empty: any row in a table to be copied refuses the copy. The source is read in one
  read transaction (a consistent snapshot); stop the processes that use it first, or what they commit after
  the snapshot stays behind.
- The installation id (`meta`) is the source's. Delivery keys (VK `random_id`, the e-mail Message-ID, the MAX
  marker) are made of it and the row ids, so a delivery in flight during the move keeps its key and a resend
  after the move is still recognised (VK drops it, MAX finds its marker). For the same reason the SQLite file
  must never send again once the copy is in use: both would make the same keys for different deliveries, and
  VK, which remembers random_ids over a community's whole history, would drop the second as a repeat.
- Row ids are kept (coverage points at deliveries, attempts at deliveries, …), and every identity sequence
  is moved past the largest id copied, so new rows never take an old id.
- SQLite's values become the target column's type: ISO text → timestamptz, 0/1 → boolean, JSON text → jsonb,
  a comma-separated list → text[] (SQLite has no arrays; `forwarding_tasks.groups`).

Tables are copied parents first (the order of their foreign keys), with COPY, a few thousand rows at a time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from gateway.errors import NotFound, ZvonokError
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

_CHUNK = 5000

# An identity column's sequence continues after the largest id copied (an empty table keeps it as it is).
_MOVE_SEQUENCE = "SELECT setval(pg_get_serial_sequence(%s, %s), max({col})) FROM {table} HAVING count(*) > 0"


def sqlite_path(url: str, base_dir: Path | None = None) -> Path:
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


async def copy_store(source: str, target: str, *, base_dir: Path | None = None) -> dict[str, int]:
    """Copy every table of the SQLite store `source` into the empty PostgreSQL store `target` (URLs, as in
    `open_store`); returns the rows copied per table, in the order copied."""
    if not source.startswith("sqlite:///"):
        raise ZvonokError("переносить можно из базы SQLite: --from sqlite:///путь/к/zvonok.db")
    if not target.startswith(("postgresql://", "postgres://")):
        raise ZvonokError("переносить можно в базу PostgreSQL: --to postgresql://пользователь@сервер/база")
    path = sqlite_path(source, base_dir)
    if not path.is_file():
        raise NotFound(f"файла базы SQLite {path} нет")
    # Both schemas up to this version first (each store migrates when it opens).
    await (await SqliteStore.open(path)).close()
    await (await PostgresStore.open(target)).close()

    src = sqlite3.connect(path, isolation_level=None)
    try:
        src.execute("BEGIN")  # one snapshot of everything
        tables = _tables_in_order(src)
        async with await psycopg.AsyncConnection.connect(target) as dst, dst.transaction():
            columns = await _target_columns(dst)
            _check_schemas(src, tables, columns)
            for table in tables:
                if table == "meta":
                    continue
                cur = await dst.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table)))
                row = await cur.fetchone()
                if row is not None and row[0]:
                    raise ZvonokError(
                        f"база PostgreSQL не пуста (в таблице {table} есть строки): переносите в новую базу или "
                        "схему; ничего не изменено"
                    )
            await dst.execute("DELETE FROM meta")  # the target's own installation id gives way to the source's
            copied: dict[str, int] = {}
            for table in tables:
                copied[table] = await _copy_table(src, dst, table, columns[table])
            for table, cols in columns.items():
                for name, (_, identity) in cols.items():
                    if identity:
                        await dst.execute(
                            sql.SQL(_MOVE_SEQUENCE).format(col=sql.Identifier(name), table=sql.Identifier(table)),
                            (table, name),
                        )
        src.execute("ROLLBACK")
    finally:
        src.close()
    return copied


def _tables_in_order(src: sqlite3.Connection) -> list[str]:
    """The source's tables, each after the tables its foreign keys point at."""
    listed = src.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    names = [r[0] for r in listed]
    parents = {
        name: {r[2] for r in src.execute(f"PRAGMA foreign_key_list({_quote(name)})")} & set(names) - {name}
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise ZvonokError("в базе SQLite циклические внешние ключи между таблицами: перенос невозможен")
        ordered.extend(ready)
    return ordered


async def _target_columns(dst: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, tuple[str, bool]]]:
    """Per table of the target's schema: column → (data type, is an identity column)."""
    cur = await dst.execute(
        """SELECT table_name, column_name, data_type, is_identity = 'YES'
           FROM information_schema.columns WHERE table_schema = current_schema()
           ORDER BY table_name, ordinal_position"""
    )
    found: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, data_type, identity in await cur.fetchall():
        found.setdefault(table, {})[column] = (data_type, bool(identity))
    return found


def _check_schemas(src: sqlite3.Connection, tables: list[str], target: dict[str, dict[str, tuple[str, bool]]]) -> None:
    problems = []
    for table in tables:
        if table not in target:
            problems.append(f"таблицы {table} нет в PostgreSQL")
            continue
        missing = [c for c in _source_columns(src, table) if c not in target[table]]
        if missing:
            problems.append(f"в таблице {table} в PostgreSQL нет столбцов {', '.join(missing)}")
    if problems:
        raise ZvonokError("схемы баз не совпадают (разные версии Zvonok?): " + "; ".join(problems))


def _source_columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in src.execute(f"PRAGMA table_info({_quote(table)})")]


async def _copy_table(
    src: sqlite3.Connection,
    dst: psycopg.AsyncConnection[Any],
    table: str,
    target: dict[str, tuple[str, bool]],
) -> int:
    names = _source_columns(src, table)
    convert = [_converter(target[name][0]) for name in names]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(n) for n in names)
    )
    rows = src.execute(f"SELECT {', '.join(_quote(n) for n in names)} FROM {_quote(table)}")
    count = 0
    async with dst.cursor().copy(statement) as copy:
        while chunk := rows.fetchmany(_CHUNK):
            for row in chunk:
                await copy.write_row([None if v is None else f(v) for f, v in zip(convert, row, strict=True)])
            count += len(chunk)
    return count


def _converter(data_type: str) -> Callable[[Any], Any]:
    """SQLite's stored value → the Python value for a PostgreSQL column of this type."""
    if data_type == "timestamp with time zone":
        return lambda v: datetime.fromisoformat(v)
    if data_type == "boolean":
        return bool
    if data_type in ("json", "jsonb"):
        return lambda v: Jsonb(json.loads(v))
    if data_type == "ARRAY":
        return lambda v: [item for item in str(v).split(",") if item]
    if data_type in ("smallint", "integer", "bigint"):
        return int
    return lambda v: v


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
