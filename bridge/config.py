"""Settings: one frozen object, built and checked at start-up, passed explicitly.

Sources, later wins: defaults < TOML file (`--config`) < `PAYBRIDGE_<NAME>` environment
variables < command-line flags. Only `load_settings` (called by the CLI) reads the environment.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bridge.core.forwarding import parse_networks
from bridge.errors import ConfigError

__all__ = ["Settings", "load_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("paybridge-data")
    host: str = "127.0.0.1"
    port: int = 8080
    # How phones and payers reach us: every URL we hand out (pair_url, checkout_url) starts with
    # it. Empty: http://<bound host>:<bound port>.
    public_url: str = ""
    admin_token: str = field(default="", repr=False)  # empty: generated on first start
    log_format: str = "auto"  # "json", "console" or "auto" (console on a terminal)
    log_level: str = "info"
    # The key that seals stored webhook signing secrets; empty: <data_dir>/secrets.key (created 0600).
    # Keep it elsewhere (another disk, a secrets mount) so a copy of the data dir alone opens nothing.
    secrets_key_file: str = ""
    # Orders
    order_ttl_default: int = 300
    order_ttl_min: int = 60
    order_ttl_max: int = 86_400
    amount_direction: str = "down"  # unique pay amounts step "down" or "up" from the asked amount
    amount_steps: int = 10
    amount_step_cents: int = 1
    # Matching
    clock_skew: int = 120  # s a payment may be observed before its order's creation
    late_grace: int = 300  # s after expiry a payment still pays the order (flagged late)
    accept_late: bool = True
    dedupe_window: int = 86_400  # s within which the same notification re-read is a duplicate
    redundant_window: int = 120  # s within which two phones' reports of one amount are one payment; 0: off
    # Webhooks
    allow_private_webhooks: bool = False
    webhook_timeout: float = 10.0
    webhook_schedule: str = "0,5,300,1800,7200,18000,36000,36000"  # s before attempt 1..n
    webhook_concurrency: int = 64  # requests in flight in all
    webhook_per_host: int = 16  # requests in flight to one host: a slow endpoint cannot starve the others
    webhook_sender: str = "process"  # "process": HTTP calls in a child process (a second core); "inline"
    # s an instance's claim on a delivery it sends holds without renewal (renewed while it runs):
    # after an instance dies, another one sends its deliveries once their leases have run out.
    webhook_lease: float = 60.0
    # s an instance's heartbeat row holds without renewal (renewed every third of it): once it runs
    # out, another instance marks the devices whose sockets that instance held offline.
    instance_ttl: float = 15.0
    # Devices
    heartbeat_interval: int = 30
    heartbeat_timeout: int = 90
    ws_ping_interval: float = 20.0
    auth_timeout: float = 10.0
    device_max_frames_per_second: int = 200
    pairing_attempts_per_minute: int = 10  # per client network (IPv6 /64, IPv4 /24, all loopback as one)
    pairing_codes_per_minute: int = 10  # per merchant: bounds the live codes a guess could hit
    # Per-merchant caps
    max_event_streams: int = 10  # open SSE streams per merchant (more: 429 too_many_streams)
    max_webhook_endpoints: int = 20  # live webhook endpoints per merchant (more: 409 too_many_endpoints)
    # Limits
    max_body: int = 64 * 1024
    header_timeout: float = 15.0  # s to send a request's headers (slowloris); also the idle keep-alive
    body_timeout: float = 15.0  # s to send a request body
    # Where the data lives: sqlite:///absolute/path.db, sqlite:relative/path.db or postgresql://user@host/db.
    # Empty: the SQLite file paybridge.db under data_dir. repr=False: a PostgreSQL URL may hold a password.
    database_url: str = field(default="", repr=False)
    sqlite_busy_timeout: int = 5000  # ms a write waits for a lock held by another process
    sqlite_synchronous: str = "FULL"  # FULL: acked data survives power loss; NORMAL: process crashes only
    # PostgreSQL session limits, s (0: none): a statement running longer, or waiting longer for a lock
    # another instance holds, fails (503 unavailable; phones resend); a session idle inside an open
    # transaction that long is ended by the server.
    pg_statement_timeout: float = 30.0
    pg_lock_timeout: float = 10.0
    pg_idle_in_transaction_timeout: float = 60.0
    expiry_interval: float = 1.0
    # Dashboard
    dashboard_idle_timeout: int = 1800  # s without a request before a dashboard session ends
    dashboard_session_max: int = 43_200  # s a dashboard session lasts at most
    dashboard_sign_ins_per_minute: int = 5  # failed sign-ins per client address
    # Reverse proxies whose X-Forwarded-For is believed (comma-separated addresses or networks, e.g.
    # "127.0.0.1, ::1" for nginx on the same box). Empty: the header is ignored and the TCP peer is
    # the client. Behind a proxy, set it, or every client shares the proxy's rate limits.
    trusted_proxies: str = ""

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ConfigError("port must be 0..65535 (PAYBRIDGE_PORT)")
        if self.amount_direction not in ("down", "up"):
            raise ConfigError("amount_direction must be 'down' or 'up' (PAYBRIDGE_AMOUNT_DIRECTION)")
        if self.redundant_window < 0:
            raise ConfigError("redundant_window must be 0 (off) or more seconds (PAYBRIDGE_REDUNDANT_WINDOW)")
        if not (0 <= self.amount_steps <= 1000):
            raise ConfigError("amount_steps must be 0..1000 (PAYBRIDGE_AMOUNT_STEPS)")
        if not (self.order_ttl_min <= self.order_ttl_default <= self.order_ttl_max):
            raise ConfigError("order_ttl_default must lie within order_ttl_min..order_ttl_max")
        if self.sqlite_synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("sqlite_synchronous must be FULL, NORMAL or EXTRA (PAYBRIDGE_SQLITE_SYNCHRONOUS)")
        _check_database_url(self.database_url)
        for name in ("pg_statement_timeout", "pg_lock_timeout", "pg_idle_in_transaction_timeout"):
            if not (0 <= getattr(self, name) <= 86_400):
                raise ConfigError(f"{name} must be 0 (none) .. 86400 seconds (PAYBRIDGE_{name.upper()})")
        if self.webhook_per_host < 1 or self.webhook_concurrency < 1:
            raise ConfigError("webhook_per_host and webhook_concurrency must be at least 1")
        if not (1.0 <= self.webhook_lease <= 3600.0):
            raise ConfigError("webhook_lease must be 1..3600 seconds (PAYBRIDGE_WEBHOOK_LEASE)")
        if not (1.0 <= self.instance_ttl <= 3600.0):
            raise ConfigError("instance_ttl must be 1..3600 seconds (PAYBRIDGE_INSTANCE_TTL)")
        if self.webhook_sender not in ("process", "inline"):
            raise ConfigError("webhook_sender must be 'process' or 'inline' (PAYBRIDGE_WEBHOOK_SENDER)")
        for name in (
            "pairing_attempts_per_minute",
            "pairing_codes_per_minute",
            "max_event_streams",
            "max_webhook_endpoints",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (PAYBRIDGE_{name.upper()})")
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as e:
            raise ConfigError(f"trusted_proxies: {e} (PAYBRIDGE_TRUSTED_PROXIES)") from None
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError("log_format must be auto, json or console (PAYBRIDGE_LOG_FORMAT)")
        if self.admin_token and len(self.admin_token) < 22:
            raise ConfigError("PAYBRIDGE_ADMIN_TOKEN must be at least 22 characters (128 bits)")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ConfigError(
                    "public_url must be an http:// or https:// URL without query or fragment (PAYBRIDGE_PUBLIC_URL)"
                )
        if not (60 <= self.dashboard_idle_timeout <= self.dashboard_session_max):
            raise ConfigError(
                "dashboard_idle_timeout must be 60 s .. dashboard_session_max (PAYBRIDGE_DASHBOARD_IDLE_TIMEOUT)"
            )
        self.schedule()  # validates

    def schedule(self) -> tuple[int, ...]:
        try:
            parts = tuple(int(p) for p in self.webhook_schedule.split(","))
        except ValueError:
            raise ConfigError("webhook_schedule is comma-separated seconds (PAYBRIDGE_WEBHOOK_SCHEDULE)") from None
        if not parts or any(p < 0 for p in parts):
            raise ConfigError("webhook_schedule needs at least one non-negative delay")
        return parts

    @property
    def database_path(self) -> Path:
        return self.data_dir / "paybridge.db"

    @property
    def database(self) -> str:
        """The database URL in use: database_url, else the SQLite file under data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite://{self.database_path.absolute().as_posix()}"

    @property
    def secrets_key_path(self) -> Path:
        return Path(self.secrets_key_file).expanduser() if self.secrets_key_file else self.data_dir / "secrets.key"

    @property
    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def _check_database_url(url: str) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        absolute = url.startswith("sqlite:///") and len(url) > len("sqlite:///")
        relative = not url.startswith("sqlite:/") and len(url) > len("sqlite:")
        if not (absolute or relative):
            raise ConfigError(
                "a SQLite database_url is sqlite:///absolute/path.db or sqlite:relative/path.db"
                " (PAYBRIDGE_DATABASE_URL)"
            )
    elif parts.scheme not in ("postgresql", "postgres"):  # libpq checks the rest when it connects
        raise ConfigError("database_url must start with sqlite: or postgresql:// (PAYBRIDGE_DATABASE_URL)")


def _coerce(name: str, kind: Any, value: Any) -> Any:
    try:
        if kind in (bool, "bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind in (int, "int"):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind in (float, "float"):
            return float(value)
        if kind in (Path, "Path"):
            return Path(str(value)).expanduser()
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} (PAYBRIDGE_{name.upper()}) has an invalid value") from None


def load_settings(
    *, config_file: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Merge defaults, the TOML file, `PAYBRIDGE_*` variables and flags into Settings."""
    known = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read config file {config_file}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {config_file} is not valid TOML: {e}") from None
        section = data.get("paybridge", data)
        for key, value in section.items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} in {config_file}")
            values[key] = _coerce(key, known[key], value)
    for key, kind in known.items():
        env_name = f"PAYBRIDGE_{key.upper()}"
        if env_name in env:
            values[key] = _coerce(key, kind, env[env_name])
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, known[key], value)
    return dataclasses.replace(Settings(), **values)
