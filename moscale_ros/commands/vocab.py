"""``moscale vocab``: what the model knows.

    moscale vocab                          # skills and styles with their training clip counts
    moscale vocab check "do a backflip" [--json]   # known, confidence, skill, nearest (every part)
    moscale vocab build [--data DIR] [--out FILE]  # prototypes from the training data into the model file

See :mod:`moscale_ros.generation.vocabulary` for what the confidence is.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("vocab", help="the skills the model knows; check a command; build the prototypes")
    parser.add_argument("--checkpoint", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run_list)
    kinds = parser.add_subparsers(dest="vocab_command", metavar="ACTION")
    check = kinds.add_parser("check", help="known, confidence, skill and nearest skills of a command (every part)")
    check.add_argument("text", help="the command, e.g. 'walk forward, then wave for three seconds'")
    check.add_argument("--checkpoint", default=None, help="model file (default: the shipped model)")
    check.add_argument(
        "--rare-clips", type=int, default=None, help="skills with fewer clips are weak (default: stored)"
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)
    build = kinds.add_parser("build", help="compute the skill prototypes from the training data, store them")
    build.add_argument("--checkpoint", default=None, help="model file to add them to (default: the shipped model)")
    build.add_argument("--data", default=None, help="prepared data folder (default: cache/data/bandai)")
    build.add_argument("--out", default=None, help="write here instead of rewriting --checkpoint")
    build.add_argument("--per-skill", type=int, default=16, help="prototypes per skill (default: %(default)s)")
    build.add_argument("--rare-clips", type=int, default=5, help="fewer training clips: weak (default: %(default)s)")
    build.add_argument("--phrases", default="config/vocabulary_eval.yaml", help="calibration phrases")
    build.set_defaults(func=run_build)


def _model_path(checkpoint: str | None):
    # moscale_ros.generation imports torch (seconds): only when a vocab command runs, not for --help
    from moscale_ros.generation.generator import DEFAULT_CHECKPOINT
    from moscale_ros.pipeline import resolve_checkpoint

    return resolve_checkpoint(checkpoint or DEFAULT_CHECKPOINT)


def run_list(args: argparse.Namespace) -> int:
    # torch (seconds) only when the command runs
    from moscale_common.errors import CheckpointError
    from moscale_ros.generation.bundle import load_generator_parts

    path = _model_path(args.checkpoint)
    vocabulary = load_generator_parts(path).vocabulary
    if vocabulary is None:
        raise CheckpointError(f"{path}: no vocabulary in this model file; add one with `moscale vocab build`")
    weak = set(vocabulary.weak_skills())
    skills = [
        {
            "skill": s,
            "clips": vocabulary.clips[s],
            "typical_seconds": vocabulary.typical_seconds[s],
            "weak": s in weak,
        }
        for s in vocabulary.skills
    ]
    if args.json:
        summary = {"skills": skills, "styles": vocabulary.styles, "threshold": vocabulary.threshold}
        summary["rare_clips"] = vocabulary.rare_clips
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{path.name}: {len(skills)} skills (training clips; weak: fewer than {vocabulary.rare_clips})")
    for row in skills:
        flag = "  weak" if row["weak"] else ""
        print(f"  {row['skill']:<22} {row['clips']:>5} clips  typical {row['typical_seconds']:.1f} s{flag}")
    print(f"{len(vocabulary.styles)} styles (training clips):")
    for style, count in vocabulary.styles.items():
        print(f"  {style:<22} {count:>5} clips")
    print(f"confidence threshold {vocabulary.threshold:.3f} (moscale vocab check TEXT)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    # torch (seconds) only when the command runs
    from moscale_ros.generation.command_text import parse_command
    from moscale_ros.generation.generator import MotionGenerator
    from moscale_ros.generation.request import validate_text
    from moscale_ros.generation.vocabulary import command_summary, summary_lines

    generator = MotionGenerator.from_checkpoint(_model_path(args.checkpoint), device="cpu", warm_up=False)
    text = validate_text(args.text, generator.limits)
    parts = parse_command(text)
    summary = command_summary(text, parts, generator.match_skills([p.text for p in parts], args.rare_clips))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print("\n".join(summary_lines(summary)))
    return 0 if summary["known"] else 1


def run_build(args: argparse.Namespace) -> int:
    # torch and the data code (seconds) only when the command runs
    from moscale_ros.training.vocabulary import build_and_store

    vocabulary, path, seconds = build_and_store(
        _model_path(args.checkpoint), args.data, args.out, args.per_skill, args.rare_clips, args.phrases
    )
    print(
        f"vocabulary: {len(vocabulary.skills)} skills, {len(vocabulary.prototypes_PD)} prototypes from "
        f"{vocabulary.info['descriptions']} training descriptions, threshold {vocabulary.threshold:.3f}, "
        f"weak: {', '.join(vocabulary.weak_skills()) or 'none'}; wrote {path} in {seconds:.1f} s",
        file=sys.stderr,
    )
    return 0
