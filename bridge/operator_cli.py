"""Operator commands beyond `serve`: merchant, pair-code, devices, orders, compat, demo and bench.

The first five talk to a running bridge over its HTTP API (`bridge.apiclient`). The bridge URL
comes from `--url`, else `PAYBRIDGE_URL`, else http://127.0.0.1:8080; credentials from
`--token` / `--api-key`, else `PAYBRIDGE_ADMIN_TOKEN` (admin) / `PAYBRIDGE_API_KEY` (merchant).

Exit codes: 0 ok, 1 the bridge refused (its `error.code` and `message` are printed), 2 usage
(including a missing credential), 4 the bridge could not be reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from bridge.apiclient import ApiCallError, ApiClient, Unreachable
from bridge.core.states import OrderStatus
from bridge.services.shop_setup import setup_text

__all__ = ["EXIT_API", "EXIT_NETWORK", "EXIT_OK", "EXIT_USAGE", "add_parsers", "run"]

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_NETWORK = 4
DEFAULT_URL = "http://127.0.0.1:8080"


class UsageError(Exception):
    """The command line (or the environment) lacks something; exit code 2."""


def _connection(p: argparse.ArgumentParser, *, api_key: bool) -> None:
    p.add_argument("--url", help=f"the bridge's base URL (default $PAYBRIDGE_URL, else {DEFAULT_URL})")
    p.add_argument("--token", help="bearer token (default $PAYBRIDGE_ADMIN_TOKEN or $PAYBRIDGE_API_KEY)")
    if api_key:
        p.add_argument("--api-key", help="the merchant's API key (default $PAYBRIDGE_API_KEY)")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of text")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the operator sub-commands."""
    merchant = sub.add_parser("merchant", help="manage merchants (admin token)")
    msub = merchant.add_subparsers(dest="merchant_command", required=True)
    create = msub.add_parser("create", help="create a merchant; prints its API key and webhook secret once")
    create.add_argument("name", help="the merchant's display name")
    _connection(create, api_key=False)

    pair = sub.add_parser("pair-code", help="create a pairing code and show it as a QR code (merchant API key)")
    pair.add_argument("--merchant", help="the merchant id this code is for (a label and a check)")
    pair.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    _connection(pair, api_key=True)

    devices = sub.add_parser("devices", help="show the relay phones' status (admin token or merchant API key)")
    _connection(devices, api_key=True)

    orders = sub.add_parser("orders", help="list orders (merchant API key)")
    orders.add_argument("--status", choices=[s.value for s in OrderStatus], help="only this status")
    orders.add_argument("--limit", type=int, default=50, help="at most this many (1..500, default 50)")
    _connection(orders, api_key=True)

    compat = sub.add_parser(
        "compat",
        help="the shop gateway settings (易支付 / V免签) for dujiaoka, v2board, Xboard, new-api (merchant API key)",
    )
    compat.add_argument("--rotate", action="store_true", help="make a new compat key first (the old one stops working)")
    _connection(compat, api_key=True)

    demo = sub.add_parser("demo", help="a complete local run with a simulated phone: no phone, no configuration")
    demo.add_argument("--keep-running", action="store_true", help="leave the bridge up and print how to call it")

    from bridge.bench.cli import add_bench_parser

    add_bench_parser(sub)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Execute an operator command; return the exit code."""
    handlers: dict[str, Callable[[argparse.Namespace, Mapping[str, str], TextIO], int]] = {
        "merchant": _merchant,
        "pair-code": _pair_code,
        "devices": _devices,
        "orders": _orders,
        "compat": _compat,
        "demo": _demo,
        "bench": _bench,
    }
    handler = handlers.get(args.command)
    if handler is None:
        print(f"paybridge: unknown command {args.command!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args, env, sys.stdout)
    except UsageError as e:
        print(f"paybridge: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ApiCallError as e:
        print(f"paybridge: the bridge refused: {e.status} {e.code}: {e.detail}", file=sys.stderr)
        return EXIT_API
    except Unreachable as e:
        print(f"paybridge: {e.message}", file=sys.stderr)
        return EXIT_NETWORK


# -- credentials ------------------------------------------------------------------------------


def _url(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    return str(args.url or env.get("PAYBRIDGE_URL") or DEFAULT_URL)


def _credential(args: argparse.Namespace, env: Mapping[str, str], *sources: str) -> str:
    """The first credential found among `sources`: flag names (`--token`) or variable names."""
    for source in sources:
        value = getattr(args, source[2:].replace("-", "_"), None) if source.startswith("--") else env.get(source)
        if value:
            return str(value)
    raise UsageError(
        f"no credentials: pass {' or '.join(s for s in sources if s.startswith('--'))} or set "
        f"{' or '.join(s for s in sources if not s.startswith('--'))}"
    )


def _client(args: argparse.Namespace, env: Mapping[str, str], *sources: str) -> ApiClient:
    return ApiClient(_url(args, env), _credential(args, env, *sources))


# -- output helpers ---------------------------------------------------------------------------


def _dump(out: TextIO, obj: Any) -> None:
    out.write(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """A plain left-aligned text table."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _short_time(stamp: Any) -> str:
    """`2026-11-27T01:02:03.456Z` -> `2026-11-27 01:02:03Z`; None -> `-`."""
    if not isinstance(stamp, str) or not stamp:
        return "-"
    return stamp.replace("T", " ").split(".")[0].rstrip("Z") + "Z"


# -- commands ---------------------------------------------------------------------------------


def _merchant(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    client = _client(args, env, "--token", "PAYBRIDGE_ADMIN_TOKEN")
    merchant = client.call("POST", "/v1/merchants", {"name": args.name})
    if args.json:
        _dump(out, merchant)
        return EXIT_OK
    out.write(
        f"Merchant created: {merchant['name']}\n"
        f"  id:              {merchant['id']}\n"
        f"  API key:         {merchant['api_key']}\n"
        f"  webhook secret:  {merchant['webhook_secret']}\n"
        "The API key and the webhook secret are shown once; store them now.\n"
        f"Next: PAYBRIDGE_API_KEY=<api key> paybridge pair-code --merchant {merchant['id']}\n"
    )
    return EXIT_OK


def _pair_code(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    client = _client(args, env, "--api-key", "--token", "PAYBRIDGE_API_KEY")
    if args.merchant:
        owner = client.call("GET", "/v1/me").get("id")
        if owner != args.merchant:
            raise UsageError(f"this API key belongs to merchant {owner}, not {args.merchant}")
    answer = client.call("POST", "/v1/pairing-codes")
    if args.json:
        _dump(out, answer)
        return EXIT_OK
    label = f" for merchant {args.merchant}" if args.merchant else ""
    out.write(
        f"Pairing code{label}: {answer['code']}  (single use, expires {_short_time(answer['expires_at'])})\n"
        f"Link: {answer['pair_url']}\n"
    )
    if not args.no_qr:
        import segno

        out.write("Scan it on the phone, or run there: paybridge-agent pair '<link>'\n")
        segno.make(answer["pair_url"]).terminal(out=out, compact=True)
    out.write(
        f"On the phone: paybridge-agent pair --server {answer.get('server', _url(args, env))} --code {answer['code']}\n"
    )
    return EXIT_OK


def _battery(device: Mapping[str, Any]) -> str:
    hb = device.get("last_heartbeat") or {}
    battery = hb.get("battery") if isinstance(hb, dict) else None
    if not isinstance(battery, dict) or battery.get("level") is None:
        return "-"
    return f"{battery['level']}%" + (" (charging)" if battery.get("charging") else "")


def _devices(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    client = _client(args, env, "--api-key", "--token", "PAYBRIDGE_ADMIN_TOKEN", "PAYBRIDGE_API_KEY")
    devices = client.call("GET", "/v1/devices").get("data", [])
    if args.json:
        _dump(out, devices)
        return EXIT_OK
    if not devices:
        out.write("No devices paired yet. Create a pairing code: paybridge pair-code\n")
        return EXIT_OK
    rows = [
        [
            d["id"],
            d.get("name") or "-",
            "revoked" if d.get("revoked") else str(d.get("status")),
            ", ".join(d.get("status_reasons") or []) or "-",
            _short_time(d.get("last_seen")),
            _battery(d),
            str(d.get("reports_today", 0)),
        ]
        for d in devices
    ]
    out.write(table(rows, ["ID", "NAME", "STATUS", "REASONS", "LAST SEEN", "BATTERY", "REPORTS TODAY"]))
    return EXIT_OK


def _orders(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    if not 1 <= args.limit <= 500:
        raise UsageError("--limit must be 1..500")
    client = _client(args, env, "--api-key", "--token", "PAYBRIDGE_API_KEY")
    query = {"limit": str(args.limit)}
    if args.status:
        query["status"] = args.status
    page = client.call("GET", "/v1/orders", query=query)
    orders = page.get("data", [])
    if args.json:
        _dump(out, orders)
        return EXIT_OK
    if not orders:
        out.write(f"No {args.status + ' ' if args.status else ''}orders.\n")
        return EXIT_OK
    rows = [
        [
            o["id"],
            o.get("merchant_order_id") or "-",
            o["status"],
            o.get("channel") or "-",
            o["amount"],
            o["pay_amount"],
            _short_time(o.get("created_at")),
            _short_time(
                o.get("expires_at") if o["status"] == OrderStatus.PENDING else o.get("paid_at") or o.get("closed_at")
            ),
        ]
        for o in orders
    ]
    out.write(table(rows, ["ID", "MERCHANT ORDER", "STATUS", "CHANNEL", "AMOUNT", "PAY", "CREATED", "EXPIRES/DONE"]))
    if page.get("has_more"):
        out.write(f"(more than {len(orders)}; raise --limit or use --json with the API's paging)\n")
    return EXIT_OK


def _compat(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    client = _client(args, env, "--api-key", "--token", "PAYBRIDGE_API_KEY")
    creds = client.call("POST", "/v1/compat/rotate") if args.rotate else client.call("GET", "/v1/compat")
    if args.json:
        _dump(out, creds)
        return EXIT_OK
    out.write(setup_text(creds))
    return EXIT_OK


def _demo(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    import asyncio

    from bridge.demo import run_demo

    return asyncio.run(run_demo(out, keep_running=args.keep_running))


def _bench(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from bridge.bench.cli import run_bench

    try:
        return run_bench(
            args,
            out,
            err=sys.stderr,
            workdir=Path(env["PAYBRIDGE_BENCH_DIR"]) if env.get("PAYBRIDGE_BENCH_DIR") else None,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
