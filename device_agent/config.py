"""Agent settings and the state directory layout.

The state directory (default `~/.paybridge-agent`, or `$PAYBRIDGE_AGENT_STATE_DIR`) holds:

```
device.key      Ed25519 private key, PKCS#8 PEM, mode 0600
device.json     {"device_id", "server", "merchant_id", "name", "heartbeat_interval", "paired_at"}
outbox.db       SQLite (WAL): unacknowledged reports and seen notification fingerprints
status.json     written by the running agent: connection state, last ack, listener health, ...
agent.lock      held (flock) by the running agent so two agents never share one state dir
http_token      the optional http source's bearer token
```

Only `device_agent.cli` reads the environment; it passes what it read to `default_state_dir`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from device_agent import __version__
from device_agent.core.backoff import BackoffPolicy
from device_agent.errors import ConfigError

__all__ = ["DEFAULT_WINDOW", "AgentSettings", "StatePaths", "default_state_dir"]

STATE_DIR_ENV = "PAYBRIDGE_AGENT_STATE_DIR"
DEFAULT_WINDOW = 8
MAX_WINDOW = 64  # the bridge allows 64 reports in flight per device
SEEN_RETENTION_MS = 7 * 24 * 3600 * 1000


def default_state_dir(env: Mapping[str, str]) -> Path:
    """`$PAYBRIDGE_AGENT_STATE_DIR`, else `~/.paybridge-agent`."""
    explicit = env.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".paybridge-agent"


@dataclass(frozen=True, slots=True)
class StatePaths:
    """Where each piece of agent state lives inside the state directory."""

    root: Path

    @property
    def key(self) -> Path:
        return self.root / "device.key"

    @property
    def device(self) -> Path:
        return self.root / "device.json"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox.db"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def lock(self) -> Path:
        return self.root / "agent.lock"

    def ensure(self) -> None:
        """Create the directory (mode 0700) if needed; raise ConfigError if that is impossible."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the state directory {self.root}: {e.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"the state directory {self.root} is not writable")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything `paybridge-agent run` needs, checked once at start-up.

    `heartbeat_interval` None means "what the bridge says in auth_ok". `backoff` with
    `base=0` and short intervals are the test switches (no patched sleeps).
    """

    state: StatePaths
    source: str
    heartbeat_interval: float | None = None
    window: int = DEFAULT_WINDOW
    exit_when_drained: bool = False
    poll_interval: float = 2.0
    status_interval: float = 2.0
    ack_timeout: float = 60.0
    connect_timeout: float = 15.0
    seen_retention_ms: int = SEEN_RETENTION_MS
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    agent_version: str = __version__

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("--source is required (termux, adb[:SERIAL], http:HOST:PORT or replay:FILE)")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"--window must be 1..{MAX_WINDOW}")
        if self.heartbeat_interval is not None and not 0.05 <= self.heartbeat_interval <= 3600:
            raise ConfigError("--heartbeat-interval must be between 0.05 and 3600 seconds")
        for name in ("poll_interval", "status_interval", "ack_timeout", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
