"""``moscale bench``: speed and memory figures of the default model, retargeting and the node.

Each area is a module in :mod:`moscale_ros.bench` exposing ``run(args) -> dict`` of figures; the
options (``--repeats``, ``--device``, ``--checkpoint``) are shared.
Results print as a table, or as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys

AREAS = ("generation", "retarget", "node", "sim")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run benchmarks and print figures")
    parser.add_argument(
        "areas", nargs="*", default=[], metavar="AREA", help=f"subset of {', '.join(AREAS)} (default: all)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per figure")
    parser.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    parser.set_defaults(func=_run)


def _print_table(results: dict) -> None:
    for area, figures in results.items():
        print(f"[{area}]")
        for key, value in figures.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"  {key:<40} {shown}")


def _run(args: argparse.Namespace) -> int:
    import torch

    results: dict = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "platform": platform.platform(),
        }
    }
    unknown = sorted(set(args.areas) - set(AREAS))
    if unknown:
        print(f"moscale bench: error: unknown area(s) {unknown}; choose from {list(AREAS)}", file=sys.stderr)
        return 2
    for area in args.areas or AREAS:
        module = importlib.import_module(f"moscale_ros.bench.{area}")
        print(f"bench: {area} ...", file=sys.stderr)
        results[area] = module.run(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_table(results)
    return 0
