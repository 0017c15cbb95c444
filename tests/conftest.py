from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import RunningBridge, running_bridge, test_settings


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[RunningBridge]:
    """A real bridge on an ephemeral loopback port with a fresh SQLite file."""
    async with running_bridge(test_settings(tmp_path / "data")) as b:
        yield b
