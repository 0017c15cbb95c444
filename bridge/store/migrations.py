"""Numbered schema migrations: (description, statements). Append only; never edit a released one.

Portable SQL: TEXT, INTEGER, BIGINT-sized integers, no SQLite-only types. Times are Unix ms.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "core tables",
        [
            """CREATE TABLE merchants (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                api_key_hash TEXT NOT NULL UNIQUE,
                webhook_secret TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )""",
            """CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                channel TEXT NOT NULL,
                name TEXT NOT NULL,
                qr_payload TEXT,
                created_at INTEGER NOT NULL
            )""",
            "CREATE INDEX accounts_merchant ON accounts(merchant_id, channel)",
            """CREATE TABLE devices (
                id TEXT PRIMARY KEY,
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                name TEXT NOT NULL,
                public_key TEXT NOT NULL,
                channels TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                revoked_at INTEGER,
                status TEXT NOT NULL DEFAULT 'offline',
                status_reasons TEXT NOT NULL DEFAULT '[]',
                connected_since INTEGER,
                last_seen INTEGER,
                last_heartbeat TEXT,
                last_heartbeat_at INTEGER,
                last_report_at INTEGER,
                reports_day TEXT,
                reports_today INTEGER NOT NULL DEFAULT 0,
                last_seq INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX devices_merchant ON devices(merchant_id)",
            """CREATE TABLE device_accounts (
                device_id TEXT NOT NULL REFERENCES devices(id),
                account_id TEXT NOT NULL REFERENCES accounts(id),
                PRIMARY KEY (device_id, account_id)
            )""",
            """CREATE TABLE pairing_codes (
                code_hash TEXT PRIMARY KEY,
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                used_at INTEGER,
                device_id TEXT
            )""",
            """CREATE TABLE orders (
                id TEXT PRIMARY KEY,
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                merchant_order_id TEXT NOT NULL,
                channel TEXT NOT NULL,
                amount_cents INTEGER NOT NULL,
                pay_amount_cents INTEGER NOT NULL,
                account_id TEXT REFERENCES accounts(id),
                status TEXT NOT NULL,
                notify_url TEXT,
                metadata TEXT NOT NULL DEFAULT '{}',
                params_hash TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                paid_at INTEGER,
                closed_at INTEGER,
                payment_id TEXT,
                late INTEGER NOT NULL DEFAULT 0,
                manual INTEGER NOT NULL DEFAULT 0,
                UNIQUE (merchant_id, merchant_order_id)
            )""",
            "CREATE INDEX orders_status_expiry ON orders(status, expires_at)",
            "CREATE INDEX orders_merchant_created ON orders(merchant_id, created_at)",
            "CREATE INDEX orders_slot_amount ON orders(merchant_id, pay_amount_cents, status)",
            # One row per (slot, pay amount) held by a pending order: the database itself keeps
            # pay amounts unique. A slot is an account id, or "<merchant>:<channel>" when the
            # merchant registered no account for that channel.
            """CREATE TABLE amount_locks (
                slot TEXT NOT NULL,
                pay_amount_cents INTEGER NOT NULL,
                order_id TEXT NOT NULL REFERENCES orders(id),
                PRIMARY KEY (slot, pay_amount_cents)
            )""",
            "CREATE INDEX amount_locks_order ON amount_locks(order_id)",
            """CREATE TABLE payments (
                id TEXT PRIMARY KEY,
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                device_id TEXT NOT NULL REFERENCES devices(id),
                kind TEXT NOT NULL,
                channel TEXT,
                amount_cents INTEGER,
                status TEXT NOT NULL,
                reason TEXT NOT NULL,
                order_id TEXT REFERENCES orders(id),
                late INTEGER NOT NULL DEFAULT 0,
                manual INTEGER NOT NULL DEFAULT 0,
                observed_at INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                event_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                notification TEXT NOT NULL
            )""",
            "CREATE INDEX payments_merchant_status ON payments(merchant_id, status, received_at)",
            """CREATE TABLE reports (
                device_id TEXT NOT NULL REFERENCES devices(id),
                event_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                received_at INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                payment_id TEXT,
                PRIMARY KEY (device_id, event_id)
            )""",
            """CREATE TABLE fingerprints (
                merchant_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                seen_at INTEGER NOT NULL,
                payment_id TEXT NOT NULL,
                PRIMARY KEY (merchant_id, fingerprint)
            )""",
            """CREATE TABLE events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                merchant_id TEXT NOT NULL,
                type TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                body TEXT NOT NULL
            )""",
            "CREATE INDEX events_merchant ON events(merchant_id, seq)",
            """CREATE TABLE webhook_endpoints (
                id TEXT PRIMARY KEY,
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                url TEXT NOT NULL,
                event_types TEXT NOT NULL,
                secret TEXT NOT NULL,
                old_secret TEXT,
                old_secret_expires_at INTEGER,
                created_at INTEGER NOT NULL,
                disabled_at INTEGER,
                disabled_reason TEXT,
                deleted_at INTEGER
            )""",
            "CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints(merchant_id)",
            """CREATE TABLE deliveries (
                id TEXT PRIMARY KEY,
                event_id TEXT NOT NULL REFERENCES events(id),
                merchant_id TEXT NOT NULL,
                endpoint_id TEXT REFERENCES webhook_endpoints(id),
                url TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at INTEGER,
                last_status_code INTEGER,
                last_error TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                succeeded_at INTEGER
            )""",
            "CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at)",
            "CREATE INDEX deliveries_merchant ON deliveries(merchant_id, status, created_at)",
        ],
    ),
    (
        "delivery attempt log",
        [
            """CREATE TABLE delivery_attempts (
                delivery_id TEXT NOT NULL REFERENCES deliveries(id),
                attempt INTEGER NOT NULL,
                at INTEGER NOT NULL,
                status_code INTEGER,
                error TEXT,
                duration_ms INTEGER NOT NULL,
                PRIMARY KEY (delivery_id, attempt)
            )""",
            "CREATE INDEX deliveries_event ON deliveries(event_id)",
            "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, status)",
        ],
    ),
    (
        "redundant phones: find other phones' sightings of a payment",
        [
            "CREATE INDEX payments_sighting ON payments(merchant_id, amount_cents, observed_at)",
            "CREATE INDEX reports_payment ON reports(payment_id, device_id)",
        ],
    ),
    (
        # seal_secret(column, value) is an SQL function the bridge installs on its connections
        # (bridge.store.sealing): AES-GCM with the key in secrets.key; already sealed values stay.
        "seal webhook signing secrets at rest",
        [
            "UPDATE merchants SET webhook_secret = seal_secret('merchants.webhook_secret', webhook_secret)",
            "UPDATE webhook_endpoints SET secret = seal_secret('webhook_endpoints.secret', secret),"
            " old_secret = seal_secret('webhook_endpoints.secret', old_secret)",
        ],
    ),
    (
        "orders: return_url and description for the payer's checkout page",
        [
            "ALTER TABLE orders ADD COLUMN return_url TEXT",
            "ALTER TABLE orders ADD COLUMN description TEXT",
        ],
    ),
    (
        "compat gateways: 易支付 / V免签 merchant credentials, orders and notifies",
        [
            # One row per merchant that uses the shop gateways. `key` must be recoverable (it signs
            # notifies), so it is stored like merchants.webhook_secret; the platform RSA key pair
            # (bare base64 PKCS#8 / SPKI) signs V2 responses and notifies.
            """CREATE TABLE compat_merchants (
                merchant_id TEXT PRIMARY KEY REFERENCES merchants(id),
                pid INTEGER NOT NULL UNIQUE,
                key TEXT NOT NULL,
                platform_private_key TEXT NOT NULL,
                platform_public_key TEXT NOT NULL,
                merchant_public_key TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            # The shop's view of an order: the exact strings it sent, echoed in notifies.
            """CREATE TABLE compat_orders (
                order_id TEXT PRIMARY KEY REFERENCES orders(id),
                merchant_id TEXT NOT NULL REFERENCES merchants(id),
                protocol TEXT NOT NULL,
                out_trade_no TEXT NOT NULL,
                money_str TEXT NOT NULL,
                type TEXT,
                name TEXT NOT NULL,
                param TEXT NOT NULL,
                notify_url TEXT,
                return_url TEXT,
                params_hash TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                UNIQUE (merchant_id, out_trade_no)
            )""",
            # A delivery with a row here is a compat notify (GET, signed when sent), not a webhook.
            """CREATE TABLE compat_notifies (
                delivery_id TEXT PRIMARY KEY REFERENCES deliveries(id),
                order_id TEXT NOT NULL REFERENCES compat_orders(order_id),
                protocol TEXT NOT NULL,
                fields TEXT NOT NULL
            )""",
            "CREATE INDEX compat_notifies_order ON compat_notifies(order_id)",
        ],
    ),
    (
        "dashboard sessions: only a hash of each session id is stored",
        [
            """CREATE TABLE sessions (
                id_hash TEXT PRIMARY KEY,
                merchant_id TEXT REFERENCES merchants(id),
                created_at INTEGER NOT NULL,
                last_seen_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL
            )""",
            "CREATE INDEX sessions_expiry ON sessions(expires_at)",
        ],
    ),
]
