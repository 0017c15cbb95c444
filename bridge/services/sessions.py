"""Dashboard sign-in: a merchant API key or the admin token becomes a server-side session.

The session id (192 random bits) lives only in the browser's cookie; the table keeps its SHA-256.
Sessions end after `dashboard_idle_timeout` without a request, after `dashboard_session_max` in
any case, and on sign-out.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from bridge.core.sessions import SessionRules, csrf_token, session_alive, should_touch
from bridge.core.tokens import hash_secret
from bridge.ids import random_bytes
from bridge.services.context import Context
from bridge.store import merchants as merchants_store
from bridge.store import sessions as store
from bridge.store.database import Tx

__all__ = ["Session", "load_session", "rules", "sign_in", "sign_out"]


@dataclass(frozen=True, slots=True)
class Session:
    id: str  # the raw id, from the cookie
    merchant_id: str | None  # None: the admin
    merchant_name: str | None
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.merchant_id is None


def rules(ctx: Context) -> SessionRules:
    s = ctx.settings
    return SessionRules(idle_ms=s.dashboard_idle_timeout * 1000, max_ms=s.dashboard_session_max * 1000)


async def sign_in(ctx: Context, secret: str, admin_hash: str) -> Session | None:
    """A new session for whoever `secret` belongs to (the admin or a merchant), or None if nobody."""
    digest = hash_secret(secret)
    is_admin = hmac.compare_digest(digest, admin_hash)
    session_id = base64.urlsafe_b64encode(random_bytes(24)).decode("ascii")
    r = rules(ctx)

    def op(tx: Tx) -> Session | None:
        now = ctx.clock.now_ms()
        store.delete_expired(tx, now=now, idle_before=now - r.idle_ms)
        merchant_id = merchant_name = None
        if not is_admin:
            merchant = merchants_store.merchant_by_key_hash(tx, digest)
            if merchant is None:
                return None
            merchant_id, merchant_name = merchant.id, merchant.name
        store.insert_session(
            tx, id_hash=hash_secret(session_id), merchant_id=merchant_id, now=now, expires_at=now + r.max_ms
        )
        return Session(session_id, merchant_id, merchant_name, csrf_token(session_id))

    return await ctx.db.write(op)


async def load_session(ctx: Context, session_id: str, *, touch: bool = True) -> Session | None:
    """The live session with this id, or None: unknown, idle too long or expired. `touch` records the
    activity (a page view does; a live feed checking the session is still there does not)."""
    if not session_id or len(session_id) > 64:
        return None
    id_hash = hash_secret(session_id)
    r = rules(ctx)
    now = ctx.clock.now_ms()
    row = await ctx.db.read(lambda tx: store.get_session(tx, id_hash))
    if row is None:
        return None
    if not session_alive(last_seen_at=row.last_seen_at, expires_at=row.expires_at, now=now, rules=r):
        await ctx.db.write(lambda tx: store.delete_session(tx, id_hash))
        return None
    if touch and should_touch(last_seen_at=row.last_seen_at, now=now, rules=r):
        await ctx.db.write(lambda tx: store.touch_session(tx, id_hash, now=now))
    return Session(session_id, row.merchant_id, row.merchant_name, csrf_token(session_id))


async def sign_out(ctx: Context, session_id: str) -> None:
    id_hash = hash_secret(session_id)
    await ctx.db.write(lambda tx: store.delete_session(tx, id_hash))
