"""What every service needs, built once by the app and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.clock import Clock
from bridge.config import Settings
from bridge.core.matching import MatchRules
from bridge.core.status import HealthRules
from bridge.metrics import Metrics
from bridge.services.events import EventBus
from bridge.store.database import Database, open_database

__all__ = ["Context", "open_context"]


@dataclass
class Context:
    settings: Settings
    db: Database
    clock: Clock
    bus: EventBus = field(default_factory=EventBus)
    metrics: Metrics = field(default_factory=Metrics)
    # Where phones and payers reach us: settings.public_url, else the address actually bound.
    bound_url: str = ""

    @property
    def base_url(self) -> str:
        """The public base URL without a trailing slash."""
        return (self.settings.public_url or self.bound_url or self.settings.base_url).rstrip("/")

    def public_url(self, path: str = "/") -> str:
        """An absolute URL we hand out (pair_url, checkout_url, ...): the public base + `path` ("/pay/x")."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def match_rules(self) -> MatchRules:
        s = self.settings
        return MatchRules(
            clock_skew_ms=s.clock_skew * 1000, late_grace_ms=s.late_grace * 1000, accept_late=s.accept_late
        )

    @property
    def health_rules(self) -> HealthRules:
        return HealthRules(heartbeat_timeout_ms=self.settings.heartbeat_timeout * 1000)


def open_context(settings: Settings, clock: Clock) -> Context:
    """An app's context, with the database its settings name (not opened yet)."""
    db = open_database(
        settings.database,
        synchronous=settings.sqlite_synchronous,
        busy_timeout_ms=settings.sqlite_busy_timeout,
        key_file=settings.secrets_key_path,
        pg_timeouts=(settings.pg_statement_timeout, settings.pg_lock_timeout, settings.pg_idle_in_transaction_timeout),
    )
    return Context(settings=settings, db=db, clock=clock)
