"""Sealing stored signing secrets: AES-256-GCM with a key kept outside the database.

Webhook signing secrets must be recoverable (we sign with them), so unlike API keys they cannot
be hashed. They are stored sealed: `pbs1:` + base64url(12-byte nonce || ciphertext || tag), with
the kind of secret (`merchants.webhook_secret`, `webhook_endpoints.secret` for an endpoint's
current and previous secret) bound in as associated data. The
key (32 random bytes, base64 in a 0600 file, by default `<data dir>/secrets.key`) never enters
the database: a copy of `paybridge.db` alone (a backup, a stray `-wal`) reveals no secret. Anyone
who can read both files — the bridge's own account and root — can.

The database connections expose `seal_secret(kind, text)` and `open_secret(kind, text)` as
SQL functions, so the SQL in `bridge/store/` seals and opens in place and services only ever see
plaintext. Both pass NULL through; `seal_secret` leaves an already sealed value as it is (so
sealing is idempotent), `open_secret` refuses a value that is not sealed or does not open.
SQLite calls this module's `SecretBox` (bridge.store.sqlite installs it on each connection);
PostgreSQL has its own functions over pgcrypto, given the same key per session
(bridge.store.postgres), so there too the key never enters the database.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.errors import StoreError
from bridge.store.files import FILE_MODE, tighten

__all__ = ["PREFIX", "SecretBox", "load_or_create_key"]

PREFIX = "pbs1:"
KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    """The sealing key in `path`, created (0600, exclusively) on first use."""
    if not path.exists():
        # Written in full to a file of our own, then linked into place: a process starting at the
        # same moment either finds no key yet or a complete one, never a half-written file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii") + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
        finally:
            tmp.unlink(missing_ok=True)
    tighten(path)
    try:
        key = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, ValueError, binascii.Error) as e:
        raise StoreError(f"cannot read the secrets key file {path}: {e}") from None
    if len(key) != KEY_BYTES:
        raise StoreError(f"the secrets key file {path} must hold {KEY_BYTES} bytes, base64-encoded")
    return key


class SecretBox:
    """Seals and opens short secrets with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.open = functools.lru_cache(maxsize=4096)(self._open)  # each delivery opens its secret

    def seal(self, kind: str, plaintext: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), kind.encode("ascii"))
        return PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii")

    def _open(self, kind: str, sealed: str) -> str:
        if not sealed.startswith(PREFIX):
            raise ValueError(f"a stored {kind} is not sealed")
        raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], kind.encode("ascii")).decode("utf-8")
        except InvalidTag:
            raise ValueError(f"a stored {kind} does not open with this key (wrong secrets.key?)") from None
