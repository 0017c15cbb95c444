from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import pg
from tests.harness import RunningBridge, make_settings, running_bridge


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[RunningBridge]:
    """A real bridge on an ephemeral loopback port with a fresh SQLite file (or PostgreSQL schema, see tests/pg.py)."""
    async with running_bridge(make_settings(tmp_path / "data")) as b:
        yield b


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL schemas this run made (tests/pg.py)."""
    pg.drop_all()
