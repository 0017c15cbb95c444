"""The OpenAPI 3.1 document of the HTTP API, served at /v1/openapi.json (docs/api.md explains it)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

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
                    "metadata": {"type": "object"},
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
