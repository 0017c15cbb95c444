"""Data at rest: a private data dir whatever the umask, and webhook signing secrets sealed with a key
kept outside the database (existing plaintext secrets are sealed by a migration)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from bridge.core.signing import new_secret
from bridge.core.tokens import hash_secret
from bridge.errors import StoreError
from bridge.store.migrations import MIGRATIONS
from tests.harness import RunningBridge, make_settings, running_bridge, running_receiver


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _on_disk(data: Path) -> bytes:
    """Every byte the database keeps on disk (the file and its WAL)."""
    return b"".join(p.read_bytes() for p in data.glob("paybridge.db*"))


async def _closed_order_webhooks(b: RunningBridge, key: str, endpoint_url: str, notify_url: str) -> None:
    status, _ = await b.call(
        "POST",
        "/v1/orders",
        token=key,
        json_body={"merchant_order_id": "c1", "amount": "1.00", "channel": "alipay", "notify_url": notify_url},
    )
    _, page = await b.call("GET", "/v1/orders", token=key)
    status, _ = await b.call("POST", f"/v1/orders/{page['data'][0]['id']}/close", token=key)
    assert status == 200


@pytest.mark.parametrize("mask", [0o022, 0o000])
async def test_data_dir_and_database_files_are_private_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    """With umask 022 (or 000) the data dir is 0700 and paybridge.db, -wal, -shm and secrets.key are 0600;
    a data dir made earlier with 0755 is tightened too."""
    data = tmp_path / "data"
    with umask(mask):
        data.mkdir(mode=0o755)
        os.chmod(data, 0o755)  # noqa: S103 - the loose mode the bridge must tighten
        async with running_bridge(make_settings(data)) as b:
            m = await b.merchant()
            await b.order(m["api_key"], "1.00")
            assert _mode(data) == 0o700
            for name in ("paybridge.db", "paybridge.db-wal", "paybridge.db-shm", "secrets.key"):
                assert _mode(data / name) == 0o600, name


async def test_signing_secrets_are_sealed_at_rest_and_still_sign(tmp_path: Path) -> None:
    """Neither the merchant's webhook secret nor an endpoint's (current or previous) appears in the
    database files; deliveries are still signed with them."""
    data = tmp_path / "data"
    async with running_bridge(make_settings(data)) as b, running_receiver() as rec, running_receiver() as notify:
        m = await b.merchant()
        status, ep = await b.call("POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": rec.url})
        assert status == 201
        status, rotated = await b.call("POST", f"/v1/webhook-endpoints/{ep['id']}/rotate-secret", token=m["api_key"])
        assert status == 200
        await _closed_order_webhooks(b, m["api_key"], rec.url, notify.url)
        await rec.wait_for(lambda: len(rec.events("order.closed")) == 1)
        await notify.wait_for(lambda: len(notify.events("order.closed")) == 1)
        for receiver, secret in ((rec, rotated["secret"]), (rec, ep["secret"]), (notify, m["webhook_secret"])):
            headers, body = receiver.requests[-1]
            assert Webhook(secret).verify(body, headers)["type"] == "order.closed"
        disk = _on_disk(data)
        for secret in (m["webhook_secret"], ep["secret"], rotated["secret"]):
            assert secret.encode() not in disk and secret.removeprefix("whsec_").encode() not in disk
        assert b"pbs1:" in disk
    key = (data / "secrets.key").read_text()
    assert key.strip() and key.encode().strip() not in _on_disk(data)


async def test_migration_seals_existing_plaintext_secrets(tmp_path: Path) -> None:
    """A database from before sealing (plaintext secrets, schema 2) is sealed on start, and its secrets
    still sign: the merchant's notify_url calls and the endpoint's (with its previous secret too)."""
    data = tmp_path / "data"
    data.mkdir()
    api_key = "pbk_" + "k" * 32
    merchant_secret, endpoint_secret, old_secret = (new_secret(os.urandom(24)) for _ in range(3))
    db = sqlite3.connect(data / "paybridge.db")
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for _, statements in MIGRATIONS[:2]:
        for sql in statements:
            db.execute(sql)
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.execute("INSERT INTO merchants VALUES ('mch_old', 'old shop', ?, ?, 0)", (hash_secret(api_key), merchant_secret))
    async with running_receiver() as rec, running_receiver() as notify:
        db.execute(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, secret, old_secret,"
            " old_secret_expires_at, created_at) VALUES ('whe_old', 'mch_old', ?, '[]', ?, ?, ?, 0)",
            (rec.url, endpoint_secret, old_secret, 2**62),
        )
        db.commit()
        db.close()
        assert merchant_secret.encode() in _on_disk(data)
        async with running_bridge(make_settings(data)) as b:
            await _closed_order_webhooks(b, api_key, rec.url, notify.url)
            await rec.wait_for(lambda: len(rec.events("order.closed")) == 1)
            await notify.wait_for(lambda: len(notify.events("order.closed")) == 1)
            for receiver, secret in ((rec, endpoint_secret), (rec, old_secret), (notify, merchant_secret)):
                headers, body = receiver.requests[-1]
                assert json.loads(body)["type"] == "order.closed"
                assert Webhook(secret).verify(body, headers)["type"] == "order.closed"
        disk = _on_disk(data)
        for secret in (merchant_secret, endpoint_secret, old_secret):
            assert secret.removeprefix("whsec_").encode() not in disk
        check = sqlite3.connect(data / "paybridge.db")
        assert check.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        assert check.execute("SELECT webhook_secret FROM merchants").fetchone()[0].startswith("pbs1:")
        check.close()


async def test_a_wrong_key_file_is_refused_at_start(tmp_path: Path) -> None:
    """With another key in secrets.key the bridge does not start (a clear error naming the key file),
    rather than failing every event it would have to sign."""
    data = tmp_path / "data"
    async with running_bridge(make_settings(data)) as b:
        await b.merchant()
    (data / "secrets.key").write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    with pytest.raises(StoreError, match=r"secrets\.key"):
        async with running_bridge(make_settings(data)):
            pass


async def test_shop_gateway_keys_are_sealed_at_rest(tmp_path: Path) -> None:
    """The 易支付 / V免签 key (before and after rotation) and the platform's RSA private key sign
    notifies, so they are kept recoverable but sealed: neither appears in the database files."""
    data = tmp_path / "data"
    async with running_bridge(make_settings(data)) as b:
        m = await b.merchant()
        status, first = await b.call("GET", "/v1/compat", token=m["api_key"])
        assert status == 200
        status, rotated = await b.call("POST", "/v1/compat/rotate", token=m["api_key"])
        assert status == 200 and rotated["key"] != first["key"]
        status, again = await b.call("GET", "/v1/compat", token=m["api_key"])
        assert again["key"] == rotated["key"]  # it opens back to what was handed out
        disk = _on_disk(data)
        for key in (first["key"], rotated["key"]):
            assert key.encode() not in disk
        with sqlite3.connect(data / "paybridge.db") as db:
            private = db.execute("SELECT platform_private_key FROM compat_merchants").fetchone()[0]
        assert private.startswith("pbs1:")
