"""The known-answer vectors from real shop clients (../shared/compat/vectors.json), for the compat tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# The shared folder sits beside the repository (/work/main and /work/shared; the same in CI).
VECTORS_PATH = Path(__file__).resolve().parents[3] / "shared" / "compat" / "vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8")) if VECTORS_PATH.exists() else {}
needs_vectors = pytest.mark.skipif(
    not VECTORS, reason=f"compat vectors not found at {VECTORS_PATH} (expected beside the repo)"
)


def requests_of(*clients: str) -> list[tuple[str, dict[str, Any]]]:
    """(client, request vector) pairs for pytest parametrization (empty without the vectors)."""
    return [(c, r) for c in clients for r in VECTORS.get("clients", {}).get(c, {}).get("requests", [])]


def notifies_of(*clients: str) -> list[tuple[str, dict[str, Any]]]:
    return [(c, n) for c in clients for n in VECTORS.get("clients", {}).get(c, {}).get("notifies", [])]


def key() -> str:
    return str(VECTORS["settings"]["key"])


def rsa_keys() -> dict[str, str]:
    return dict(VECTORS["rsa_test_keys"])
