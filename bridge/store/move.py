"""Move a bridge's data from SQLite to PostgreSQL (`paybridge move-db`), or copy it (`paybridge backup`).

Both databases are opened through `open_database` with the one secrets key, so each is brought to
this bridge's schema version first (the source as `serve` would on upgrade, the target from
nothing). Then, in one PostgreSQL transaction:

- the target must be empty (every table but `schema_version`) and at the source's version;
- the tables are copied in dependency order (parents before the rows that reference them), read
  from one SQLite read transaction (one snapshot) in chunks handed over a small queue, so memory
  stays bounded whatever the size;
- identity columns (`events.seq`) are set past the largest copied value;
- rows are counted on both sides; a difference rolls everything back.

Sealed secrets are the one thing not copied byte for byte: the backends seal differently (SQLite:
AES-GCM in Python, `pbs1:`; PostgreSQL: pgcrypto, `pgs1:`, bridge.store.postgres), so each sealed
column is opened on the source and sealed again on the target, in SQL, with the same key, which
the bridge on PostgreSQL must then use. The key is proven first by opening a stored secret of
each kind: a wrong key refuses the move before anything is written. A sealed value in a column
this module does not know refuses it too (a newer migration must be added to `SEALED`).

The source should be stopped (a bridge still writing to it would go on after the snapshot).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import StoreError
from bridge.store.database import Database, Tx, open_database, redact_url, sqlite_path
from bridge.store.sealing import PREFIX

__all__ = ["SEALED", "MoveRefused", "TableCount", "backup", "describe", "move"]

CHUNK = 2000
# (table, column) -> the kind of secret sealed in it (the first argument of seal_secret/open_secret).
SEALED: dict[tuple[str, str], str] = {
    ("merchants", "webhook_secret"): "merchants.webhook_secret",
    ("webhook_endpoints", "secret"): "webhook_endpoints.secret",
    ("webhook_endpoints", "old_secret"): "webhook_endpoints.secret",
    ("compat_merchants", "key"): "compat_merchants.key",
    ("compat_merchants", "platform_private_key"): "compat_merchants.platform_private_key",
}
_SKIP = {"schema_version", "sqlite_sequence"}


class MoveRefused(StoreError):
    """The move cannot be made as asked (wrong key, target not empty, schemas apart); nothing was written."""


@dataclass(frozen=True, slots=True)
class TableCount:
    """A table's rows in the source snapshot and in the target after the commit."""

    table: str
    source: int
    target: int


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    columns: tuple[str, ...]


class _Aborted(Exception):
    """The other side of the hand-over failed; its own error is the one reported."""


class _Pipe:
    """A bounded hand-over between the SQLite reader thread and the PostgreSQL writer thread."""

    def __init__(self) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self.closed = threading.Event()

    def put(self, item: Any) -> None:
        while not self.closed.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Aborted

    def get(self) -> Any:
        while True:
            try:
                return self._q.get(timeout=0.2)
            except queue.Empty:
                if self.closed.is_set():
                    raise _Aborted from None


def _order(tables: list[str], parents: dict[str, set[str]]) -> list[str]:
    """`tables` with every table after the tables it references (creation order otherwise)."""
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise MoveRefused(f"foreign keys form a cycle through {name}")
        for parent in sorted(parents.get(name, ())):
            if parent in tables:
                visit(parent, (*path, name))
        done.append(name)

    for name in tables:
        visit(name, ())
    return done


def _source_tables(tx: Tx) -> list[_Table]:
    names = [str(r[0]) for r in tx.all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
    names = [n for n in names if n not in _SKIP and not n.startswith("sqlite_")]
    parents = {n: {str(r["table"]) for r in tx.all(f'PRAGMA foreign_key_list("{n}")')} for n in names}
    columns = {n: tuple(str(r["name"]) for r in tx.all(f'PRAGMA table_info("{n}")')) for n in names}
    return [_Table(n, columns[n]) for n in _order(names, parents)]


def _version(tx: Tx) -> int:
    row = tx.one("SELECT MAX(version) FROM schema_version")
    return int(row[0] or 0) if row is not None else 0


def _check_key(tx: Tx, tables: list[_Table], key_file: Path) -> None:
    """Open one stored secret of each sealed column: a wrong key refuses the move here."""
    for t in tables:
        for col in t.columns:
            kind = SEALED.get((t.name, col))
            if kind is None:
                continue
            try:
                tx.one(f"SELECT open_secret('{kind}', {col}) FROM {t.name} WHERE {col} IS NOT NULL LIMIT 1")
            except Exception:
                raise MoveRefused(
                    f"the secrets key {key_file} does not open the {t.name}.{col} values in the source database;"
                    " give the key file that belongs to it (--secrets-key-file)"
                ) from None


def _selects(t: _Table) -> str:
    cols = ", ".join(f"open_secret('{SEALED[(t.name, c)]}', {c})" if (t.name, c) in SEALED else c for c in t.columns)
    return f"SELECT rowid, {cols} FROM {t.name} WHERE rowid > ? ORDER BY rowid LIMIT {CHUNK}"


def _inserts(t: _Table) -> str:
    values = ", ".join(f"seal_secret('{SEALED[(t.name, c)]}', ?)" if (t.name, c) in SEALED else "?" for c in t.columns)
    return f"INSERT INTO {t.name} ({', '.join(t.columns)}) VALUES ({values})"


def _looks_sealed(value: object) -> bool:
    """Whether a value has the shape of a sealed secret (`pbs1:` and a nonce, ciphertext and tag in
    base64url), not merely its prefix: a merchant may well name a shop "pbs1:..."."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return False
    try:
        raw = base64.urlsafe_b64decode(value[len(PREFIX) :].encode("ascii"))
    except (ValueError, binascii.Error):
        return False
    return len(raw) >= 12 + 16 + 1


def _produce(tx: Tx, tables: list[_Table], pipe: _Pipe) -> dict[str, int]:
    """In the SQLite reader thread, one snapshot: every table in chunks, then None."""
    counts: dict[str, int] = {}
    try:
        for t in tables:
            plain = [i for i, c in enumerate(t.columns) if (t.name, c) not in SEALED]
            last, n = -1, 0
            while True:
                rows = tx.all(_selects(t), (last,))
                if not rows:
                    break
                last = int(rows[-1][0])
                chunk = [tuple(r)[1:] for r in rows]
                for row in chunk:
                    for i in plain:
                        if _looks_sealed(row[i]):
                            raise MoveRefused(
                                f"{t.name}.{t.columns[i]} holds a sealed value this tool does not know how to"
                                " move (bridge.store.move.SEALED lacks it)"
                            )
                pipe.put((t, chunk))
                n += len(chunk)
            counts[t.name] = n
        pipe.put(None)
        return counts
    except BaseException:
        pipe.closed.set()
        raise


def _consume(tx: Tx, tables: list[_Table], pipe: _Pipe, version: int) -> dict[str, int]:
    """In the PostgreSQL writer thread, one transaction: check the target, insert, fix identities, count."""
    try:
        if _version(tx) != version:
            raise MoveRefused(f"the target's schema is version {_version(tx)}, the source's {version}")
        have: dict[str, set[str]] = {
            str(r[0]): set()
            for r in tx.all("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
        }
        for r in tx.all(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        ):
            have.setdefault(str(r[0]), set()).add(str(r[1]))
        for t in tables:
            missing = set(t.columns) - have.get(t.name, set())
            if missing:
                raise MoveRefused(f"the target lacks {t.name} ({', '.join(sorted(missing))})")
            if tx.one(f"SELECT 1 FROM {t.name} LIMIT 1") is not None:
                raise MoveRefused(f"the target is not empty ({t.name} has rows): move into an empty database")
        while (item := pipe.get()) is not None:
            t, chunk = item
            tx.executemany(_inserts(t), chunk)
        for t in tables:
            for r in tx.all(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ? AND is_identity = 'YES'",
                (t.name,),
            ):
                col = str(r[0])
                tx.one(
                    f"SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX({col}), 0) + 1, false) FROM {t.name}",
                    (t.name, col),
                )
        counts = {}
        for t in tables:
            row = tx.one(f"SELECT COUNT(*) FROM {t.name}")
            counts[t.name] = int(row[0]) if row is not None else 0
        return counts
    except BaseException:
        pipe.closed.set()
        raise


async def move(source_url: str, target_url: str, key_file: Path) -> list[TableCount]:
    """Copy every row of the SQLite database at `source_url` into the empty PostgreSQL database at
    `target_url` in one transaction; return the counts (MoveRefused, nothing written, if it cannot)."""
    _check_arguments(source_url, target_url, key_file)
    src = open_database(source_url, key_file=key_file)
    await src.open()
    try:
        dst = open_database(target_url, key_file=key_file)
        await dst.open()
        try:
            return await _copy(src, dst, key_file)
        finally:
            await dst.close()
    finally:
        await src.close()


def _check_arguments(source_url: str, target_url: str, key_file: Path) -> None:
    if not source_url.startswith("sqlite:"):
        raise MoveRefused("the source must be a SQLite database (sqlite:///path/paybridge.db)")
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise MoveRefused("the target must be a PostgreSQL database (postgresql://...)")
    path = Path(sqlite_path(source_url))
    if not path.is_file():
        raise MoveRefused(f"no SQLite database at {path}")
    if not key_file.is_file():  # opening would make a new key, which opens nothing
        raise MoveRefused(f"no secrets key at {key_file}: give the one that belongs to {path} (--secrets-key-file)")


async def _copy(src: Database, dst: Database, key_file: Path) -> list[TableCount]:
    def inspect(tx: Tx) -> tuple[list[_Table], int]:
        tables = _source_tables(tx)
        _check_key(tx, tables, key_file)
        return tables, _version(tx)

    tables, version = await src.read(inspect)
    pipe = _Pipe()
    results = await asyncio.gather(
        src.read(lambda tx: _produce(tx, tables, pipe)),
        dst.write(lambda tx: _consume(tx, tables, pipe, version)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        real = [e for e in errors if not isinstance(e, _Aborted)]
        raise (real or errors)[0]
    read_counts: dict[str, int] = results[0]  # type: ignore[assignment]
    written: dict[str, int] = results[1]  # type: ignore[assignment]
    if read_counts != written:
        raise StoreError(f"row counts differ after the move (source {read_counts}, target {written})")

    def count(tx: Tx) -> dict[str, int]:
        out = {}
        for t in tables:
            row = tx.one(f"SELECT COUNT(*) FROM {t.name}")
            out[t.name] = int(row[0]) if row is not None else 0
        return out

    after = await dst.read(count)
    return [TableCount(t.name, read_counts[t.name], after[t.name]) for t in tables]


def describe(counts: Sequence[TableCount], target_url: str) -> str:
    """The summary `paybridge move-db` prints."""
    width = max((len(c.table) for c in counts), default=5)
    lines = [f"{'table':<{width}}  {'source':>8}  {'target':>8}"]
    lines += [f"{c.table:<{width}}  {c.source:>8}  {c.target:>8}" for c in counts]
    same = all(c.source == c.target for c in counts)
    lines.append(
        f"moved {sum(c.target for c in counts)} rows into {redact_url(target_url)}"
        + ("; every table's count matches" if same else "; COUNTS DIFFER")
    )
    return "\n".join(lines)


def backup(url: str, target: Path) -> int:
    """Back up the SQLite database at `url` into the new file `target` while a bridge may be writing
    (SQLite's online backup, bridge.store.sqlite.backup); return its page count. PostgreSQL: pg_dump."""
    if not url.startswith("sqlite:"):
        raise MoveRefused("paybridge backup copies a SQLite database; for PostgreSQL use pg_dump -Fc")
    from bridge.store.sqlite import backup as sqlite_backup

    return sqlite_backup(Path(sqlite_path(url)), target)
