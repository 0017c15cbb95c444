"""The OpenAPI 3.1 document of the HTTP API, served at /v1/openapi.json (docs/api.md explains it)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.services.events import EVENT_TYPES
from bridge.web.webhooks import DELIVERY_STATUSES

__all__ = ["OPENAPI", "add_routes"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "Invalid request"),
    "401": _json(_ref("Error"), "Missing or wrong credentials"),
    "404": _json(_ref("Error"), "Not found (or not yours)"),
    "409": _json(_ref("Error"), "Conflict with the current state"),
    "413": _json(_ref("Error"), "Body over 64 KiB"),
    "429": _json(_ref("Error"), "Too many requests or open streams (see Retry-After)"),
}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {"name": "starting_after", "in": "query", "schema": {"type": "string"}},
]
MERCHANT: list[dict[str, list[str]]] = [{"bearer": []}]


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "has_more"],
        "properties": {"data": {"type": "array", "items": _ref(item)}, "has_more": {"type": "boolean"}},
    }


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {status: ok, **ERRORS},
        "security": MERCHANT if security is None else security,
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


AMOUNT = {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$", "examples": ["10.00"]}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Paybridge", "version": "1", "description": "See docs/api.md."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Compat": {
                "type": "object",
                "required": ["pid", "key", "epay_url", "submit_url", "vmq_url", "platform_public_key"],
                "properties": {
                    "pid": {"type": "integer", "minimum": 1000},
                    "key": {"type": "string", "pattern": "^[A-Za-z0-9]{32}$"},
                    "epay_url": {"type": "string"},
                    "submit_url": {"type": "string"},
                    "vmq_url": {"type": "string"},
                    "platform_public_key": {"type": "string"},
                    "merchant_public_key": {"type": ["string", "null"]},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Order": {
                "type": "object",
                "required": [
                    "id",
                    "merchant_order_id",
                    "status",
                    "channel",
                    "amount",
                    "amount_cents",
                    "pay_amount",
                    "pay_amount_cents",
                    "created_at",
                    "expires_at",
                    "paid_at",
                    "payment_id",
                    "checkout_url",
                    "metadata",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "merchant_order_id": {"type": "string"},
                    "status": {"enum": ["pending", "paid", "expired", "closed"]},
                    "channel": {"enum": ["alipay", "wechat", "unionpay", "any"]},
                    "amount": AMOUNT,
                    "amount_cents": {"type": "integer"},
                    "pay_amount": AMOUNT,
                    "pay_amount_cents": {"type": "integer"},
                    "account": {"type": ["object", "null"]},
                    "notify_url": {"type": ["string", "null"]},
                    "return_url": {"type": ["string", "null"]},
                    "description": {"type": ["string", "null"]},
                    "checkout_url": {"type": "string", "format": "uri"},
                    "created_at": {"type": "string"},
                    "expires_at": {"type": "string"},
                    "paid_at": {"type": ["string", "null"]},
                    "payment_id": {"type": ["string", "null"]},
                    "late": {"type": "boolean"},
                    "manual": {"type": "boolean"},
                    "metadata": {"type": "object"},
                    "warnings": {"type": "array", "items": {"type": "string"}},
                },
            },
            "NewOrder": {
                "type": "object",
                "additionalProperties": False,
                "required": ["merchant_order_id", "channel"],
                "properties": {
                    "merchant_order_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "amount": AMOUNT,
                    "amount_cents": {"type": "integer", "minimum": 1},
                    "channel": {"enum": ["alipay", "wechat", "unionpay", "any"]},
                    "expires_in": {"type": "integer", "minimum": 60, "maximum": 86400},
                    "notify_url": {"type": "string", "format": "uri"},
                    "return_url": {"type": "string", "format": "uri", "maxLength": 2048},
                    "description": {"type": "string", "minLength": 1, "maxLength": 256},
                    "metadata": {"type": "object"},
                },
            },
            "CheckoutStatus": {
                "type": "object",
                "required": [
                    "id",
                    "status",
                    "amount",
                    "pay_amount",
                    "expires_at",
                    "seconds_left",
                    "watch",
                    "return_url",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["pending", "paid", "expired", "closed"]},
                    "amount": AMOUNT,
                    "pay_amount": AMOUNT,
                    "expires_at": {"type": "string"},
                    "seconds_left": {"type": "integer", "minimum": 0},
                    "watch": {"type": "boolean"},
                    "return_url": {"type": ["string", "null"]},
                },
            },
            "Payment": {
                "type": "object",
                "required": ["id", "status", "reason", "amount_cents"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["unmatched", "matched", "ignored"]},
                    "reason": {"type": "string"},
                    "amount": {"type": ["string", "null"]},
                    "amount_cents": {"type": ["integer", "null"]},
                    "order_id": {"type": ["string", "null"]},
                },
            },
            "Device": {
                "type": "object",
                "required": ["id", "name", "status", "status_reasons"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "status": {"enum": ["online", "degraded", "offline"]},
                    "status_reasons": {"type": "array", "items": {"type": "string"}},
                },
            },
            "WebhookEndpoint": {
                "type": "object",
                "required": ["id", "url", "event_types", "created_at", "disabled"],
                "properties": {
                    "id": {"type": "string"},
                    "url": {"type": "string"},
                    "event_types": {"type": "array", "items": {"type": "string"}},
                    "created_at": {"type": "string"},
                    "disabled": {"type": "boolean"},
                    "disabled_at": {"type": ["string", "null"]},
                    "disabled_reason": {"type": ["string", "null"]},
                    "secret": {"type": "string", "description": "only when created; shown once"},
                    "deleted": {"type": "boolean"},
                },
            },
            "NewWebhookEndpoint": {
                "type": "object",
                "additionalProperties": False,
                "required": ["url"],
                "properties": {
                    "url": {"type": "string", "format": "uri", "maxLength": 2048},
                    "event_types": {"type": "array", "items": {"enum": list(EVENT_TYPES)}},
                },
            },
            "Delivery": {
                "type": "object",
                "required": ["id", "event_id", "event_type", "url", "status", "attempts", "created_at"],
                "properties": {
                    "id": {"type": "string"},
                    "event_id": {"type": "string"},
                    "event_type": {"enum": list(EVENT_TYPES)},
                    "endpoint_id": {"type": ["string", "null"]},
                    "url": {"type": "string"},
                    "status": {"enum": list(DELIVERY_STATUSES)},
                    "attempts": {"type": "integer"},
                    "next_attempt_at": {"type": ["string", "null"]},
                    "last_status_code": {"type": ["integer", "null"]},
                    "last_error": {"type": ["string", "null"]},
                    "created_at": {"type": "string"},
                    "updated_at": {"type": "string"},
                    "succeeded_at": {"type": ["string", "null"]},
                    "attempt_log": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Event": {
                "type": "object",
                "required": ["id", "type", "timestamp", "data"],
                "properties": {
                    "id": {"type": "string"},
                    "type": {"enum": list(EVENT_TYPES)},
                    "timestamp": {"type": "string"},
                    "data": {"type": "object"},
                },
            },
            "Account": {
                "type": "object",
                "required": ["id", "name", "channel"],
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "channel": {"type": "string"},
                    "qr_payload": {"type": ["string", "null"]},
                },
            },
        },
    },
    "paths": {
        "/v1/merchants": {
            "post": _op(
                "Create a merchant (admin)",
                _json({"type": "object"}),
                status="201",
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 128}},
                },
            )
        },
        "/v1/orders": {
            "post": _op("Create an order", _json(_ref("Order")), status="201", body=_ref("NewOrder")),
            "get": _op(
                "List orders",
                _json(_page("Order")),
                params=[
                    *PAGE,
                    {"name": "status", "in": "query", "schema": {"enum": ["pending", "paid", "expired", "closed"]}},
                    {"name": "merchant_order_id", "in": "query", "schema": {"type": "string"}},
                ],
            ),
        },
        "/v1/orders/{id}": {"get": _op("Get an order", _json(_ref("Order")), params=[ID])},
        "/v1/orders/{id}/close": {"post": _op("Close a pending order", _json(_ref("Order")), params=[ID])},
        "/v1/payments": {
            "get": _op(
                "List payments",
                _json(_page("Payment")),
                params=[
                    *PAGE,
                    {"name": "status", "in": "query", "schema": {"enum": ["unmatched", "matched", "ignored"]}},
                ],
            )
        },
        "/v1/payments/{id}": {"get": _op("Get a payment", _json(_ref("Payment")), params=[ID])},
        "/v1/payments/{id}/match": {
            "post": _op(
                "Match an unmatched payment to an order by hand",
                _json({"type": "object"}),
                params=[ID],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["order_id"],
                    "properties": {"order_id": {"type": "string"}},
                },
            )
        },
        "/v1/payments/{id}/ignore": {"post": _op("Ignore an unmatched payment", _json(_ref("Payment")), params=[ID])},
        "/v1/accounts": {
            "post": _op(
                "Register a receiving account",
                _json(_ref("Account")),
                status="201",
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["channel", "name"],
                    "properties": {
                        "channel": {"enum": ["alipay", "wechat", "unionpay"]},
                        "name": {"type": "string", "minLength": 1, "maxLength": 128},
                        "qr_payload": {"type": "string", "maxLength": 2048},
                        "device_ids": {"type": "array", "items": {"type": "string"}},
                    },
                },
            ),
            "get": _op("List receiving accounts", _json({"type": "object"})),
        },
        "/v1/accounts/{id}/devices": {
            "post": _op(
                "Link a device to a receiving account (its reports then match that account's orders)",
                _json(
                    {
                        "type": "object",
                        "required": ["account_id", "device_id"],
                        "properties": {"account_id": {"type": "string"}, "device_id": {"type": "string"}},
                    }
                ),
                params=[ID],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["device_id"],
                    "properties": {"device_id": {"type": "string", "minLength": 1, "maxLength": 64}},
                },
            )
        },
        "/v1/webhook-endpoints": {
            "post": _op(
                "Create a webhook endpoint (its secret is shown once)",
                _json(_ref("WebhookEndpoint")),
                status="201",
                body=_ref("NewWebhookEndpoint"),
            ),
            "get": _op(
                "List webhook endpoints (never their secrets)",
                _json({"type": "object", "properties": {"data": {"type": "array", "items": _ref("WebhookEndpoint")}}}),
            ),
        },
        "/v1/webhook-endpoints/{id}": {
            "get": _op("Get a webhook endpoint", _json(_ref("WebhookEndpoint")), params=[ID]),
            "delete": _op(
                "Delete a webhook endpoint (its pending deliveries become disabled)",
                _json(_ref("WebhookEndpoint")),
                params=[ID],
            ),
        },
        "/v1/webhook-endpoints/{id}/rotate-secret": {
            "post": _op(
                "Rotate an endpoint's secret (the previous one keeps signing for 24 h)",
                _json(
                    {
                        "type": "object",
                        "required": ["id", "secret", "previous_secret_valid_until"],
                        "properties": {
                            "id": {"type": "string"},
                            "secret": {"type": "string"},
                            "previous_secret_valid_until": {"type": "string"},
                        },
                    }
                ),
                params=[ID],
            )
        },
        "/v1/deliveries": {
            "get": _op(
                "The delivery log, newest first",
                _json(_page("Delivery")),
                params=[
                    *PAGE,
                    {"name": "status", "in": "query", "schema": {"enum": list(DELIVERY_STATUSES)}},
                    {"name": "event_id", "in": "query", "schema": {"type": "string"}},
                ],
            )
        },
        "/v1/deliveries/{id}": {
            "get": _op("Get a delivery with its attempt log", _json(_ref("Delivery")), params=[ID])
        },
        "/v1/deliveries/{id}/retry": {
            "post": _op("Redeliver now (not while pending)", _json(_ref("Delivery")), params=[ID])
        },
        "/v1/events": {
            "get": _op(
                "The events feed, oldest first",
                _json(_page("Event")),
                params=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                ],
            )
        },
        "/v1/events/stream": {
            "get": _op(
                "Server-Sent Events: every event after Last-Event-ID (or ?after=), then live ones",
                {"description": "An endless text/event-stream", "content": {"text/event-stream": {"schema": {}}}},
                params=[
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ],
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (admin token)",
                {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            )
        },
        "/v1/pairing-codes": {"post": _op("Create a pairing code", _json({"type": "object"}), status="201")},
        "/v1/devices/pair": {
            "post": _op(
                "Pair a device with a code",
                _json({"type": "object"}),
                status="201",
                security=[],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["code", "public_key", "name"],
                    "properties": {
                        "code": {"type": "string"},
                        "public_key": {"type": "string"},
                        "name": {"type": "string"},
                        "channels": {"type": "array", "items": {"type": "string"}},
                    },
                },
            )
        },
        "/v1/devices": {"get": _op("List devices", _json({"type": "object"}))},
        "/v1/devices/{id}": {
            "get": _op("Get a device", _json(_ref("Device")), params=[ID]),
            "delete": _op("Revoke a device", _json(_ref("Device")), params=[ID]),
        },
        "/v1/me": {"get": _op("The merchant this API key belongs to", _json({"type": "object"}))},
        "/pay/{id}/status": {
            "get": _op(
                "A checkout page's order status (public: the order id is the capability)",
                _json(_ref("CheckoutStatus")),
                params=[ID],
                security=[],
            )
        },
        "/v1/compat": {
            "get": _op("Shop gateway (易支付 / V免签) credentials, made on first use", _json(_ref("Compat"))),
            "put": _op(
                "Register the merchant's RSA public key for 易支付 V2",
                _json(_ref("Compat")),
                body={
                    "type": "object",
                    "required": ["merchant_public_key"],
                    "additionalProperties": False,
                    "properties": {"merchant_public_key": {"type": ["string", "null"], "maxLength": 4096}},
                },
            ),
        },
        "/v1/compat/rotate": {"post": _op("A new compat key", _json(_ref("Compat")))},
        "/healthz": {"get": _op("Health", _json({"type": "object"}), security=[])},
    },
}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/openapi.json", openapi)
