"""`paybridge`: serve, demo, bench and the operator commands. The only place that reads os.environ."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge import __version__
from bridge.config import Settings, load_settings
from bridge.errors import ConfigError, StoreError
from bridge.logs import configure_logging

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_STORE = 3


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the bridge server")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="where the admin token and, unless PAYBRIDGE_DATABASE_URL says otherwise, the SQLite database live"
        " (default ./paybridge-data)",
    )
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8080; 0 picks a free one)")
    p.add_argument("--config", type=Path, help="a TOML settings file")


def _db_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (
        ("move-db", "copy a SQLite database into an empty PostgreSQL one (stop the bridge first)"),
        ("backup", "copy the SQLite database to a new file while the bridge runs (PostgreSQL: pg_dump)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--data-dir", type=Path, help="the bridge's data dir (default ./paybridge-data)")
        p.add_argument("--config", type=Path, help="a TOML settings file")
        p.add_argument("--secrets-key-file", type=Path, help="the secrets key (default as for serve)")
        if name == "move-db":
            p.add_argument("--from", dest="source", help="sqlite:///path.db (default: the bridge's database)")
            p.add_argument("--to", dest="target", required=True, help="postgresql://... (empty; tables made here)")
        else:
            p.add_argument("--to", dest="target", type=Path, required=True, help="the new backup file")


def _db_command(args: argparse.Namespace, settings: Settings) -> int:
    """`move-db` and `backup`: the database tools."""
    database = getattr(args, "source", None) or settings.database
    key_file = args.secrets_key_file or settings.secrets_key_path
    if args.command == "move-db":
        from bridge.store.move import describe, move

        print(describe(asyncio.run(move(database, args.target, key_file)), args.target), flush=True)
        print(f"start the bridge with PAYBRIDGE_DATABASE_URL=<the target> and this secrets key: {key_file}")
        return 0
    if not database.startswith("sqlite:"):
        print("paybridge backup: on PostgreSQL use pg_dump -Fc (docs/deploy.md)", file=sys.stderr)
        return EXIT_CONFIG
    from bridge.store.move import backup

    pages = backup(database, args.target)
    print(f"backed up {database} to {args.target} ({pages} pages); keep {key_file} apart from it")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paybridge", description="Paybridge payment bridge")
    parser.add_argument("--version", action="version", version=f"paybridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _db_parsers(sub)
    try:
        from bridge import operator_cli
    except ImportError:  # pragma: no cover - optional commands not installed
        pass
    else:
        operator_cli.add_parsers(sub)
    return parser


def bound_port(site: object, default: int) -> int:
    """The port a started aiohttp TCPSite listens on (useful with port 0)."""
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None)
    return int(sockets[0].getsockname()[1]) if sockets else default


async def serve(settings: Settings) -> int:
    from aiohttp import web

    from bridge.services.admin import ensure_admin_token
    from bridge.store.database import redact_url
    from bridge.web.app import create_app, make_runner
    from bridge.web.keys import CTX

    admin_hash, new_token = ensure_admin_token(settings.data_dir, settings.admin_token)
    app = create_app(settings, admin_hash=admin_hash)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
    await site.start()
    port = bound_port(site, settings.port)
    app[CTX].bound_url = f"http://{settings.host}:{port}"
    if new_token:
        print(f"Admin token (shown once; store it now): {new_token}", flush=True)
    where = f"data in {settings.data_dir}" + (
        f", database {redact_url(settings.database_url)}" if settings.database_url else ""
    )
    print(f"paybridge listening on http://{settings.host}:{port} ({where})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            settings = load_settings(
                config_file=args.config,
                env=os.environ,
                overrides={"data_dir": args.data_dir, "host": args.host, "port": args.port},
            )
            configure_logging(settings.log_format, settings.log_level)
            return asyncio.run(serve(settings))
        if args.command in ("move-db", "backup"):
            settings = load_settings(config_file=args.config, env=os.environ, overrides={"data_dir": args.data_dir})
            return _db_command(args, settings)
        from bridge import operator_cli

        return operator_cli.run(args, os.environ)
    except ConfigError as e:
        print(f"paybridge: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as e:
        print(f"paybridge: database error: {e}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return 130
