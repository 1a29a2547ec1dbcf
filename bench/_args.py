"""The command line the benchmarks share: ``--quick``, ``--peers``/``--no-peers`` (where a
peer is measured) and ``--json FILE``."""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def bench_parser(doc: str, name: str, peers: str | None = None) -> argparse.ArgumentParser:
    """A parser for a benchmark whose docstring is ``doc`` and whose figures go to
    ``bench/results/<name>.json``; ``peers``: what ``--peers`` measures, if anything
    (default: yes, except with ``--quick``; read it with ``with_peers``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (CI)")
    if peers is not None:
        parser.add_argument(
            "--peers",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"also measure {peers} (default: yes, except with --quick)",
        )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / f"{name}.json",
        help=f"where to write every figure (default: bench/results/{name}.json)",
    )
    return parser


def with_peers(args: argparse.Namespace) -> bool:
    """Whether to measure the peers: ``--peers``/``--no-peers``, else not with ``--quick``."""
    chosen: bool | None = args.peers
    return (not args.quick) if chosen is None else chosen
