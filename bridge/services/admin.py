"""The admin token and merchants: created by admins, shown once, stored hashed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bridge.core.models.delivery import SenderBacklog
from bridge.core.models.health import Health
from bridge.core.models.ids import MerchantId
from bridge.core.models.merchant import Merchant, MerchantUsage, NewMerchant
from bridge.core.signing import new_secret
from bridge.core.states import DeviceStatus
from bridge.core.tokens import api_key_from_bytes, hash_secret
from bridge.ids import new_id, random_bytes
from bridge.services.context import Context
from bridge.store import deliveries as deliveries_store
from bridge.store import devices as devices_store
from bridge.store import merchants as store
from bridge.store.database import Tx
from bridge.store.files import private_dir

__all__ = [
    "ADMIN_TOKEN_FILE",
    "create_merchant",
    "database_ok",
    "ensure_admin_token",
    "get_merchant",
    "health",
    "list_merchants",
    "merchant_for_key",
]

ADMIN_TOKEN_FILE = "admin_token.sha256"  # noqa: S105 - a file name


def ensure_admin_token(data_dir: Path, configured: str) -> tuple[str, str | None]:
    """(hash of the admin token, the new token if one was generated just now).

    A configured token (PAYBRIDGE_ADMIN_TOKEN) wins. Otherwise the token's hash is kept in the
    data dir (mode 0600); the token itself is generated once, returned to be printed once, and
    never stored. Delete the file to get a new token.
    """
    if configured:
        return hash_secret(configured), None
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text(encoding="ascii").strip(), None
    token = api_key_from_bytes("pba", random_bytes(24))
    private_dir(data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(hash_secret(token) + "\n")
    return hash_secret(token), token


async def get_merchant(ctx: Context, merchant_id: str) -> Merchant:
    def op(tx: Tx) -> Merchant:
        merchant = store.get_merchant(tx, merchant_id)
        assert merchant is not None  # the key was just resolved to it
        return merchant

    return await ctx.db.read(op)


async def merchant_for_key(ctx: Context, key_hash: str) -> MerchantId | None:
    """The id of the merchant whose API key hashes to `key_hash`, or None."""

    def op(tx: Tx) -> MerchantId | None:
        merchant = store.merchant_by_key_hash(tx, key_hash)
        return None if merchant is None else merchant.id

    return await ctx.db.read(op)


async def database_ok(ctx: Context) -> None:
    """A trivial read: returns once the database answers (raises DatabaseUnavailable when it cannot)."""
    await ctx.db.read(store.ping)


async def create_merchant(ctx: Context, name: str) -> NewMerchant:
    """A new merchant with its API key and webhook secret (in the clear this once; stored hashed / sealed)."""
    api_key = api_key_from_bytes("pbk", random_bytes(24))
    webhook_secret = new_secret(random_bytes(24))
    merchant_id = MerchantId(new_id("mch"))
    key_hash = hash_secret(api_key)

    def op(tx: Tx) -> int:
        now = ctx.clock.now_ms()
        store.insert_merchant(
            tx, id=merchant_id, name=name, api_key_hash=key_hash, webhook_secret=webhook_secret, now=now
        )
        return now

    now = await ctx.db.write(op)
    return NewMerchant(Merchant(merchant_id, name, key_hash, now), api_key, webhook_secret)


async def list_merchants(ctx: Context) -> list[MerchantUsage]:
    """Every merchant with its usage (the admin's overview)."""
    return await ctx.db.read(store.list_merchants)


SENDER_LATE_MS = 60_000  # a delivery due longer ago than this means the sender is behind


async def health(ctx: Context) -> Health:
    """The system at a glance: the database answering (and how fast), devices by status, the webhook
    sender's backlog. Connected sockets are the web layer's to add."""
    started = time.perf_counter()

    def op(tx: Tx) -> tuple[dict[DeviceStatus, int], SenderBacklog]:
        backlog = deliveries_store.sender_backlog(tx, now=ctx.clock.now_ms(), late_after_ms=SENDER_LATE_MS)
        return devices_store.status_counts(tx), backlog

    devices, backlog = await ctx.db.read(op)
    read_ms = round((time.perf_counter() - started) * 1000, 1)
    return Health(read_ms=read_ms, devices=devices, deliveries=backlog, sender_mode=ctx.settings.webhook_sender)
