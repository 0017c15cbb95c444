"""Operator commands beyond `serve` (demo, bench, merchant, pair-code, devices, orders)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

__all__ = ["add_parsers", "run"]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the operator sub-commands."""


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    raise SystemExit(f"paybridge: unknown command {args.command!r}")
