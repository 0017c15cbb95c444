"""PAYBRIDGE_DATABASE_URL: which backend a bridge runs on, how a bad URL is refused, that a password never shows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bridge.config import Settings, load_settings
from bridge.errors import ConfigError
from bridge.store.database import open_database, redact_url, sqlite_path
from tests import pg


async def test_the_default_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    """Without a URL the bridge keeps its SQLite file in the data dir, as before; the URL form opens the same file."""
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.database == f"sqlite://{(tmp_path / 'data' / 'paybridge.db').as_posix()}"
    db = open_database(settings.database)
    assert db.dialect == "sqlite"
    await db.open()
    await db.close()
    assert (tmp_path / "data" / "paybridge.db").is_file()
    assert sqlite_path("sqlite:rel/x.db") == "rel/x.db" and sqlite_path("sqlite:///a b/x?.db") == "/a b/x?.db"


@pytest.mark.parametrize("url", ["mysql://root@127.0.0.1/test", "sqlite://host/x.db", "sqlite:", "sqlite:///", "x"])
def test_a_bad_url_is_refused_naming_the_variable(url: str) -> None:
    """A URL of another kind, or a SQLite URL without a file, is a configuration error naming the variable."""
    with pytest.raises(ConfigError, match="PAYBRIDGE_DATABASE_URL"):
        load_settings(config_file=None, env={"PAYBRIDGE_DATABASE_URL": url})


def test_the_password_is_never_shown() -> None:
    """Settings' repr leaves the URL out; redact_url keeps the user, host and options and hides the password."""
    s = load_settings(config_file=None, env={"PAYBRIDGE_DATABASE_URL": "postgresql://pb:hunter2-secret@db:5432/pb"})
    assert s.database == "postgresql://pb:hunter2-secret@db:5432/pb"
    assert "hunter2" not in repr(s)
    assert redact_url(s.database) == "postgresql://pb:***@db:5432/pb"
    assert redact_url("postgresql://pb@db/pb?sslmode=require") == "postgresql://pb@db/pb?sslmode=require"


def test_serve_runs_on_postgresql(tmp_path: Path) -> None:
    """`paybridge serve` with a postgresql:// URL migrates an empty schema, answers the API from it, and its
    start-up line names the database without the password."""
    url = pg.fresh_database().replace("postgresql://postgres@", "postgresql://postgres:pw-secret-1@", 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    env.update(PAYBRIDGE_DATABASE_URL=url, PAYBRIDGE_ADMIN_TOKEN="serve-on-postgres-admin-token-0123")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = ""
        for line in proc.stdout:
            if "listening on" in line:
                break
        assert "listening on" in line and "pw-secret" not in line and "postgres:***@" in line, line
        base = re.search(r"http://\S+", line).group(0)  # type: ignore[union-attr]
        req = urllib.request.Request(
            base + "/v1/merchants",
            data=b'{"name": "pg shop"}',
            method="POST",
            headers={"Authorization": "Bearer serve-on-postgres-admin-token-0123"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201 and json.loads(r.read())["name"] == "pg shop"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT name FROM merchants").fetchone()
    assert row == ("pg shop",)
