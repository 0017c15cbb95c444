"""The device's identity: its Ed25519 key (file mode 0600) and `device.json` (id + server).

Files are written atomically (temporary file in the same directory, fsync, `os.replace`), so a
crash leaves either the old or the new version, never half of one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from device_agent.config import StatePaths
from device_agent.core.pair_url import PairUrlError, check_server, websocket_url
from device_agent.core.protocol import auth_message
from device_agent.errors import ConfigError
from device_agent.logs import log_event

__all__ = [
    "DeviceRecord",
    "atomic_write",
    "generate_key",
    "load_device",
    "load_key",
    "public_key_b64",
    "save_device",
    "save_key",
    "sign_auth",
]

log = logging.getLogger("device_agent.identity")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What pairing established: who this device is and which bridge it talks to."""

    device_id: str
    server: str
    merchant_id: str
    name: str
    heartbeat_interval: int
    paired_at: int  # Unix ms
    insecure: bool = False  # plain-text transport to a non-loopback host was explicitly allowed

    @property
    def ws_url(self) -> str:
        return websocket_url(self.server)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write `data` to `path` atomically with permissions `mode` (set before any byte is written).

    `durable=False` skips the fsyncs (status.json: rewritten every few seconds, losing the last
    version in a power cut is harmless, flash wear is not).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    except OSError:  # some filesystems cannot fsync directories; the rename is still atomic
        pass
    finally:
        os.close(dir_fd)


def generate_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """Base64 of the 32 raw public key bytes, as `POST /v1/devices/pair` expects."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def sign_auth(key: Ed25519PrivateKey, *, nonce: str, device_id: str, timestamp: int) -> str:
    """Base64 Ed25519 signature of the protocol's auth message."""
    return base64.b64encode(key.sign(auth_message(nonce, device_id, timestamp))).decode("ascii")


def save_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Store the private key as unencrypted PKCS#8 PEM with mode 0600."""
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    atomic_write(path, pem, mode=0o600)


def load_key(path: Path) -> Ed25519PrivateKey:
    """Load the private key; tighten its mode to 0600 if something loosened it."""
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, 0o600)
            log_event(log, "identity.key_mode_fixed", level=logging.WARNING, path=str(path))
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(
            f"no device key at {path}; pair first: paybridge-agent pair --server URL --code CODE"
        ) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the device key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} does not hold an Ed25519 private key")
    return key


def save_device(state: StatePaths, record: DeviceRecord) -> None:
    """Write `device.json` atomically."""
    data = json.dumps(record.to_json(), indent=2, sort_keys=True).encode() + b"\n"
    atomic_write(state.device, data, mode=0o600)


def load_device(state: StatePaths) -> DeviceRecord:
    """Read `device.json`; ConfigError with the fix when the device is not paired."""
    try:
        obj = json.loads(state.device.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"this agent is not paired (no {state.device}); run: paybridge-agent pair --server URL --code CODE"
        ) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {state.device}: {e}") from None
    try:
        record = DeviceRecord(
            device_id=str(obj["device_id"]),
            server=str(obj["server"]),
            merchant_id=str(obj.get("merchant_id", "")),
            name=str(obj.get("name", "")),
            heartbeat_interval=int(obj.get("heartbeat_interval", 30)),
            paired_at=int(obj.get("paired_at", 0)),
            insecure=bool(obj.get("insecure", False)),
        )
        check_server(record.server, insecure=record.insecure)
    except (KeyError, TypeError, ValueError) as e:
        detail = e.args[0] if isinstance(e, PairUrlError) else f"{type(e).__name__}: {e}"
        raise ConfigError(f"{state.device} is damaged ({detail}); pair again") from None
    return record
