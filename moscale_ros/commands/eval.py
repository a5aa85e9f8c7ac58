"""``moscale eval {tokenizer,generator,compare,physics,behaviours,vocab}``: evaluations printing measured figures.

Each evaluation is a module exposing ``run(args) -> int`` (imported only when it runs, so ``--help``
stays fast) and an argument function here; add one with a line in :data:`EVALUATIONS`.
"""

from __future__ import annotations

import argparse
import importlib


def _tokenizer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", default=None, help="tokenizer checkpoint (default: cache/runs/tokenizer/last.safetensors)"
    )
    parser.add_argument("--data", default=None, help="prepared data folder (default: cache/data/bandai)")
    parser.add_argument("--split", default="test", help="which split to reconstruct (default: %(default)s)")
    parser.add_argument("--max-frames", type=int, default=196, help="segment length in frames (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="generator file (default: models/moscale-bandai.safetensors, else "
        "cache/runs/transformer/model.safetensors); next-token files work too; repeat it to evaluate "
        "several side by side (same texts, lengths and seeds; latency interleaved)",
    )
    parser.add_argument(
        "--sweep",
        default=None,
        metavar="YAML",
        help="evaluate every combination of the generation settings in this file (e.g. "
        "config/eval/sweep_refine.yaml) for each checkpoint",
    )
    parser.add_argument("--report", default=None, metavar="FILE", help="also write the tables to this Markdown file")
    parser.add_argument(
        "--evaluator", default=None, help="evaluator file (default: cache/runs/evaluator/evaluator.safetensors)"
    )
    parser.add_argument("--config", default="config/eval/generator.yaml", help="protocol YAML (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a protocol value")
    parser.add_argument("--data", default=None, help="prepared data folder (default: cache/data/bandai)")
    parser.add_argument("--runs", type=int, default=None, help="repeated runs (default: the protocol's)")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate a fixed random subset of the split")
    parser.add_argument("--refine-iterations", type=int, nargs="+", default=None, help="generation override")
    parser.add_argument(
        "--refine-schedule", choices=["cosine", "linspace_cosine"], default=None, help="generation override"
    )
    parser.add_argument("--guidance", type=float, default=None, help="generation override")
    parser.add_argument("--guidance-end", type=float, default=None, help="generation override")
    parser.add_argument("--top-p", type=float, default=None, help="generation override")
    parser.add_argument("--temperature", type=float, default=None, help="generation override")
    parser.add_argument("--no-reference", action="store_true", help="skip the real-motion reference row")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/eval/compare.yaml", help="comparison YAML (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--minutes-per-variant", type=float, default=None, help="training minutes of each transformer")
    parser.add_argument("--tokenizer-minutes", type=float, default=None, help="training minutes of each tokenizer")
    parser.add_argument("--evaluator-minutes", type=float, default=None, help="training minutes of the evaluator")
    parser.add_argument("--evaluator", default=None, help="use this trained evaluator instead of training one")
    parser.add_argument("--runs", type=int, default=None, help="repeated evaluation runs (default: the config's)")
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate a fixed random subset of the test split")
    parser.add_argument("--out", default=None, help="folder of the stages (default: cache/runs/compare)")
    parser.add_argument("--results", default=None, help="Markdown output (default: docs/RESULTS.md)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads while generating (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON at the end")


def _physics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/eval/physics.yaml", help="protocol YAML (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a protocol value")
    parser.add_argument("--checkpoint", default=None, help="generator file (default: the shipped model)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per command (default: the protocol's)")
    parser.add_argument("--commands", nargs="+", default=None, help="commands to run instead of the protocol's")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _behaviours_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/eval/behaviours.yaml", help="protocol YAML (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a protocol value")
    parser.add_argument("--checkpoint", default=None, help="generator file (default: the shipped model)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per command (default: the protocol's)")
    parser.add_argument("--commands", nargs="+", default=None, help="only these commands (new ones get no checks)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _vocab_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, help="model file with a vocabulary (default: the shipped model)")
    parser.add_argument(
        "--phrases", default=None, help="known/unknown phrasings (default: config/vocabulary_eval.yaml)"
    )
    parser.add_argument(
        "--evaluator", default=None, help="content judge (default: cache/runs/evaluator/evaluator.safetensors if there)"
    )
    parser.add_argument("--data", default=None, help="prepared data folder (default: cache/data/bandai)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per phrasing (default: %(default)s)")
    parser.add_argument("--phrasings-per-skill", type=int, default=3, help="(default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


EVALUATIONS = {
    "tokenizer": (
        _tokenizer_arguments,
        "moscale_ros.evaluation.tokenizer",
        "per-prefix reconstruction MPJPE and codebook usage of a tokenizer on held-out clips",
    ),
    "generator": (
        _generator_arguments,
        "moscale_ros.evaluation.evaluate",
        "R-precision, FID, MM-Dist, diversity, multimodality, content/style accuracy of a generator on the test split",
    ),
    "compare": (
        _compare_arguments,
        "moscale_ros.evaluation.compare",
        "controlled comparison of next-scale vs next-token order (trains every stage, writes docs/RESULTS.md)",
    ),
    "physics": (
        _physics_arguments,
        "moscale_ros.sim.evaluate",
        "fraction of generated motions the simulated robot survives (MuJoCo), tracking, effort, self-collision",
    ),
    "behaviours": (
        _behaviours_arguments,
        "moscale_ros.evaluation.behaviours",
        "what a person checks by eye (distance and direction walked, turn, raised hands, waves, bow, foot lift)",
    ),
    "vocab": (
        _vocab_arguments,
        "moscale_ros.evaluation.vocabulary",
        "known vs unknown commands (AUROC, false accept/reject at the threshold), per-skill content accuracy",
    ),
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate a model and print its figures")
    kinds = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, (add_arguments, module_name, description) in EVALUATIONS.items():
        p = kinds.add_parser(name, help=description, description=description)
        add_arguments(p)
        p.set_defaults(func=lambda args, module_name=module_name: importlib.import_module(module_name).run(args))
