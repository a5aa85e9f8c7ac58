"""``moscale generate``: text to motion with the next-scale model, coarse plan first.

    moscale generate "a person waves the right hand" --seconds 4 --out wave.npz --gif wave.gif
    moscale generate "walk forward" --out walk.bvh --seed 3 --refine-iterations 1 2 5 10
    moscale generate "then run" --continue-from walk.npz --seconds 3 --out run.npz
    moscale generate "kick" --motion walk.npz --edit-range 1.0 2.5 --out kick.npz

``.npz`` output: ``joints`` (T, 22, 3) final motion, ``scale_joints`` (K, T, 22, 3) the motion
after every scale, ``codes_s<k>`` code indices, ``fps``, ``text``, ``seed``, ``prefix_frames``.
``.bvh`` output: the final motion on the canonical skeleton (centimetres). The GIF shows one row
per scale, coarse to final.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from moscale_common.errors import InputError
from moscale_common.skeleton import CANONICAL_FPS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a motion from text (streams every scale)")
    p.add_argument("text", help="what the person does, e.g. 'a person waves the right hand'")
    p.add_argument("--seconds", type=float, default=None, help="duration (default: the model's length estimator)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random; printed)")
    p.add_argument("--out", default=None, help="output motion: .npz or .bvh")
    p.add_argument("--gif", default=None, help="animated GIF, one row per scale")
    p.add_argument(
        "--checkpoint", default=None, help="generator checkpoint (default: models/moscale-bandai.safetensors)"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default: cpu)")
    p.add_argument(
        "--refine-iterations",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="in-scale refinement passes per scale, e.g. 1 2 5 10",
    )
    p.add_argument(  # the flag's former name, kept working
        "--iterations", dest="refine_iterations", type=int, nargs="+", default=None, help=argparse.SUPPRESS
    )
    p.add_argument(
        "--refine-schedule",
        choices=["cosine", "linspace_cosine"],
        default=None,
        help="tokens re-masked between refinement passes (default: the model's)",
    )
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance at scale 1")
    p.add_argument("--guidance-end", type=float, default=None, help="classifier-free guidance at the last scale")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (0, 1]")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (0: greedy)")
    p.add_argument(
        "--continue-from",
        default=None,
        metavar="MOTION",
        help="continue a motion (.npz/.bvh/.npy): the new one starts with its last frames",
    )
    p.add_argument("--prefix-seconds", type=float, default=1.0, help="how much of --continue-from to start with")
    p.add_argument("--motion", default=None, help="motion to edit with --edit-range (.npz/.bvh/.npy)")
    p.add_argument(
        "--edit-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("START", "END"),
        help="regenerate [START, END) seconds of --motion under the text",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def _motion_at_20fps(path: str, what: str):
    from moscale_ros.data.motion_file import load_motion_at  # NumPy and YAML: only when a motion is read

    joints = load_motion_at(path)
    print(f"{what}: {path} ({joints.shape[0]} frames at {CANONICAL_FPS:g} fps)", file=sys.stderr)
    return joints


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: torch and the model code take seconds (`moscale --help` does not).
    import numpy as np

    from moscale_ros.generation.command_text import CommandPart
    from moscale_ros.generation.config import SamplingOverrides
    from moscale_ros.generation.generator import MotionGenerator
    from moscale_ros.generation.request import validate_text
    from moscale_ros.generation.vocabulary import command_summary, summary_lines
    from moscale_ros.runtime import select_device

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".npz", ".bvh"):
        raise InputError(f"--out {out}: unsupported motion file, use .npz or .bvh")
    if args.edit_range is not None and args.motion is None:
        raise InputError("--edit-range needs --motion (the motion to edit)")
    if args.edit_range is not None and args.continue_from is not None:
        raise InputError("--edit-range and --continue-from cannot be combined")
    device = select_device(args.device)
    generator = MotionGenerator.from_checkpoint(
        args.checkpoint, device=device, overrides=SamplingOverrides.from_args(args)
    )
    vocabulary = None
    if generator.vocabulary is not None:  # what `moscale vocab check TEXT` says, for the whole text
        text = validate_text(args.text, generator.limits)
        vocabulary = command_summary(text, [CommandPart(text, text)], generator.match_skills([text]))
        print("\n".join(summary_lines(vocabulary)), file=sys.stderr)
    if args.edit_range is not None:
        stream = generator.stream_edit(
            _motion_at_20fps(args.motion, "editing"), args.edit_range[0], args.edit_range[1], args.text, args.seed
        )
    else:
        prefix = None
        if args.continue_from is not None:
            if not args.prefix_seconds > 0:
                raise InputError(f"--prefix-seconds must be > 0, got {args.prefix_seconds}")
            previous = _motion_at_20fps(args.continue_from, "continuing")
            prefix = previous[-max(1, int(round(args.prefix_seconds * generator.fps))) :]
        stream = generator.stream(args.text, args.seconds, args.seed, prefix_joints=prefix)
    results = []
    for result in stream:
        results.append(result)
        print(
            f"scale {result.scale_index}/{result.num_scales}: {result.joints.shape[0]} frames "
            f"({result.seconds:.2f} s) after {result.elapsed_s * 1e3:.1f} ms",
            file=sys.stderr,
        )
    final = results[-1]
    written = []
    if out is not None:
        if out.suffix.lower() == ".npz":
            out.parent.mkdir(parents=True, exist_ok=True)
            codes = {f"codes_s{k + 1}": c for k, c in enumerate(final.codes)}
            np.savez_compressed(
                out,
                joints=final.joints,
                scale_joints=np.stack([r.joints for r in results]),
                fps=final.fps,
                text=final.text,
                seed=final.seed,
                prefix_frames=final.prefix_frames,
                **codes,
            )
        else:
            from moscale_ros.data.canonical_bvh import write_canonical_bvh

            write_canonical_bvh(out, final.joints, final.fps)
        written.append(str(out))
    if args.gif:
        from moscale_ros.visualize import render_plans_gif

        plans = [
            (f"scale {r.scale_index}/{r.num_scales}" + (" (final)" if r.is_final else ""), r.joints, None)
            for r in results
        ]
        written.append(str(render_plans_gif(args.gif, plans, fps=final.fps, title=final.text)))
    summary = {
        "text": final.text,
        "seed": final.seed,
        "seconds": final.seconds,
        "frames": int(final.joints.shape[0]),
        "prefix_frames": final.prefix_frames,
        "scales_ms": [round(r.elapsed_s * 1e3, 2) for r in results],
        "written": written,
    }
    if vocabulary is not None:
        summary.update({k: vocabulary[k] for k in ("known", "status", "confidence", "skill", "nearest")})
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"'{final.text}': {final.seconds:.2f} s, seed {final.seed}; first scale after "
            f"{results[0].elapsed_s * 1e3:.1f} ms, final after {final.elapsed_s * 1e3:.1f} ms"
            + (f"; wrote {', '.join(written)}" if written else "")
        )
    return 0
