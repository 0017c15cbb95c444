"""Prometheus metrics, one registry per app (tests run several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reports = Counter("paybridge_reports_total", "Device reports by outcome", ["outcome"], registry=r)
        self.matches = Counter("paybridge_matches_total", "Payments matched to orders", ["kind"], registry=r)
        self.unmatched = Counter("paybridge_unmatched_total", "Payments left unmatched", ["reason"], registry=r)
        self.orders = Counter("paybridge_orders_created_total", "Orders created", registry=r)
        self.webhook_attempts = Counter(
            "paybridge_webhook_attempts_total", "Webhook delivery attempts by outcome", ["outcome"], registry=r
        )
        self.connected_devices = Gauge("paybridge_connected_devices", "Authenticated device connections", registry=r)
        self.ingest_seconds = Histogram(
            "paybridge_ingest_seconds",
            "Report receipt to commit",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.webhook_seconds = Histogram(
            "paybridge_webhook_seconds",
            "Webhook request duration",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0),
        )
