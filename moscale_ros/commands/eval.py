"""``moscale eval {tokenizer,generator,compare}``: evaluations that print tables of measured figures.

Each evaluation is a module exposing ``add_arguments(parser)`` and ``run(args) -> int``; add one
by adding a line to :data:`EVALUATIONS`.
"""

from __future__ import annotations

import argparse
import importlib

EVALUATIONS = {
    "tokenizer": (
        "moscale_ros.training.tokenizer_eval",
        "per-prefix reconstruction MPJPE and codebook usage of a tokenizer on held-out clips",
    ),
    "generator": (
        "moscale_ros.evaluation.evaluate",
        "R-precision, FID, MM-Dist, diversity, multimodality, content/style accuracy of a generator on the test split",
    ),
    "compare": (
        "moscale_ros.evaluation.compare",
        "controlled comparison of next-scale vs next-token order (trains every stage, writes docs/RESULTS.md)",
    ),
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate a model and print its figures")
    kinds = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, (module_name, description) in EVALUATIONS.items():
        p = kinds.add_parser(name, help=description, description=description)
        importlib.import_module(module_name).add_arguments(p)
        p.set_defaults(func=lambda args, module_name=module_name: importlib.import_module(module_name).run(args))
