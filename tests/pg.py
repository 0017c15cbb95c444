"""PostgreSQL for tests: a throwaway schema per database a test asks for, all dropped when the run ends.

- The store suite (tests/bridge/test_store_backends.py) runs on PostgreSQL at
  `PAYBRIDGE_TEST_DATABASE_URL` if that is a postgresql:// URL, else at the local default
  (`postgresql://postgres@127.0.0.1:5432/test`). Unreachable: those tests skip with a message
  saying how to run them, except under CI=true, where they fail.
- `PAYBRIDGE_TEST_DATABASE_URL=postgresql://...` also makes every bridge the harness starts
  (`make_settings`) use PostgreSQL, one schema per data directory, so the end-to-end API tests
  run on it: `PAYBRIDGE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test pytest tests/bridge/test_orders.py`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

ENV = "PAYBRIDGE_TEST_DATABASE_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
HOW = (
    f"PostgreSQL is not reachable at {{url}} ({{error}}): {{what}}. To run these tests, start a server with "
    f"trust auth for user postgres and a database `test` on 127.0.0.1:5432, or point {ENV} at one "
    f"(postgresql://user@host:port/db)."
)

_RUN = f"pbtest_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_made: list[tuple[str, str]] = []  # (server url, schema)
_by_dir: dict[Path, str] = {}


def server_url() -> str:
    url = os.environ.get(ENV, "")
    return url if url.startswith(("postgresql://", "postgres://")) else DEFAULT_URL


def e2e_on_postgres() -> bool:
    """Whether the harness's bridges run on PostgreSQL (PAYBRIDGE_TEST_DATABASE_URL is a postgresql:// URL)."""
    return os.environ.get(ENV, "").startswith(("postgresql://", "postgres://"))


def _with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def reachable_or_skip() -> str:
    """The server URL if PostgreSQL answers; else skip (or fail under CI=true) saying how to run these tests."""
    url = server_url()
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as e:
        error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(HOW.format(url=url, error=error, what="CI=true, so this fails instead of skipping"))
        pytest.skip(HOW.format(url=url, error=error, what="skipped (CI=true would fail)"))
    return url


def fresh_database() -> str:
    """A URL whose tables live in a new, empty schema (dropped at the end of the run)."""
    import psycopg

    url = reachable_or_skip()
    schema = f"{_RUN}_{len(_made)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _made.append((url, schema))
    return _with_schema(url, schema)


def database_for(data_dir: Path) -> str:
    """The harness's PostgreSQL URL for a bridge data directory: the same schema each time it restarts."""
    key = data_dir.absolute()
    if key not in _by_dir:
        _by_dir[key] = fresh_database()
    return _by_dir[key]


def _stale(url: str) -> list[tuple[str, str]]:
    """Schemas left by earlier runs whose process is gone (killed before it could drop them)."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        names = [str(r[0]) for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pbtest\\_%'")]
    stale = []
    for name in names:
        pid = name.split("_")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append((url, name))
    return stale


def drop_all() -> None:
    """Drop every schema this run made, and those of earlier runs that died before dropping theirs."""
    if not _made:
        return
    import psycopg

    with contextlib.suppress(psycopg.Error):
        _made.extend(_stale(_made[0][0]))
    for url, schema in _made:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except psycopg.Error:
            pass
    _made.clear()
    _by_dir.clear()
