"""``moscale train {tokenizer,transformer,evaluator}``: one set of training options for every model.

Each trainer module exposes ``run(args) -> int`` and reads ``args.config`` (YAML), ``args.set``
(``key.path=value`` overrides), ``args.out`` (run directory), ``args.resume``, ``args.device``.
"""

from __future__ import annotations

import argparse
import importlib

TRAINERS = {
    "tokenizer": ("moscale_ros.training.tokenizer", "multi-scale residual VQ motion tokenizer"),
    "transformer": ("moscale_ros.training.transformer", "next-scale text-to-motion transformer"),
    "evaluator": ("moscale_ros.training.evaluator", "text-motion evaluator for the metrics"),
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model (tokenizer, transformer, evaluator)")
    kinds = parser.add_subparsers(dest="what", metavar="MODEL", required=True)
    for name, (module, description) in TRAINERS.items():
        p = kinds.add_parser(name, help=description)
        p.add_argument("--config", default=f"config/train/{name}.yaml", help="YAML config (default: %(default)s)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
        p.add_argument("--out", default=None, help="run directory (default: cache/runs/<model>)")
        p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        p.set_defaults(func=lambda args, module=module: importlib.import_module(module).run(args))
