"""``moscale model export|info``: ship a trained generator (fp16, provenance) and inspect model files.

``export`` reloads a generator checkpoint (e.g. ``cache/runs/transformer/model.safetensors``), writes
it with floating tensors cast to ``--dtype`` plus ``--info key=value`` provenance in its metadata and
``--generation key=value`` sampling defaults (e.g. the settings a ``moscale eval generator --sweep``
chose; the names of :class:`~moscale_ros.generation.config.SamplingOverrides`), and checks the
shipped file: it decodes the same token codes with both files and prints the largest joint-position
difference (mm) that the cast causes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="export a trained generator to ship, or inspect a model file")
    what = parser.add_subparsers(dest="what", metavar="ACTION", required=True)
    export = what.add_parser("export", help="write a generator checkpoint for shipping (fp16 by default)")
    export.add_argument("source", help="generator checkpoint (e.g. cache/runs/transformer/model.safetensors)")
    export.add_argument("destination", help="output file (e.g. models/moscale-bandai.safetensors)")
    export.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    export.add_argument("--info", action="append", default=[], metavar="KEY=VALUE", help="provenance to record")
    export.add_argument(
        "--generation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a sampling default to store (YAML value), e.g. guidance=3.0 or refine_iterations=[1,1,2,2]",
    )
    export.set_defaults(func=_export)
    info = what.add_parser("info", help="print what a model file holds")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)


def _export(args: argparse.Namespace) -> int:
    import torch

    from moscale_common.errors import InputError
    from moscale_ros.data.features import features_to_joints_torch
    from moscale_ros.generation.bundle import load_generator_parts, save_generator

    extra = {}
    for item in args.info:
        if "=" not in item:
            raise InputError(f"--info {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        extra[key.strip()] = value
    parts = load_generator_parts(args.source)
    extra = {**parts.extra, **extra}
    generation = sampling_defaults(args.generation).apply(parts.generation)
    out = save_generator(
        args.destination, parts.tokenizer, parts.transformer, parts.length_estimator, parts.mean_D, parts.std_D,
        parts.text_encoder, generation, extra=extra, dtype=getattr(torch, DTYPES[args.dtype]),
    )  # fmt: skip
    shipped = load_generator_parts(out)
    # Same codes through both decoders: how far the cast moves the joints.
    generator = torch.Generator().manual_seed(0)
    num_latents = parts.tokenizer.scale_lengths(49)[-1]
    codes = [
        torch.randint(0, parts.tokenizer.codebook_size, (4, length), generator=generator)
        for length in parts.tokenizer.scale_lengths(num_latents)
    ]
    with torch.no_grad():
        joints = [
            features_to_joints_torch(p.tokenizer.decode_indices(codes, num_latents) * p.std_D + p.mean_D)
            for p in (parts, shipped)
        ]
    error_mm = float((joints[0] - joints[1]).norm(dim=-1).max()) * 1000
    size_mb = Path(out).stat().st_size / 1e6
    print(f"model export: {out} ({size_mb:.1f} MB, {args.dtype}); decoding error from the cast: {error_mm:.3f} mm max")
    return 0


def sampling_defaults(items: list[str]):
    """``KEY=VALUE`` items (YAML values) as :class:`SamplingOverrides`; ConfigError names a bad one."""
    import yaml

    from moscale_common.config import from_dict
    from moscale_common.errors import ConfigError
    from moscale_ros.generation.config import SamplingOverrides

    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--generation {item!r}: expected KEY=VALUE")
        settings[key.strip()] = yaml.safe_load(value)
    return from_dict(SamplingOverrides, settings, where="--generation")


def _info(args: argparse.Namespace) -> int:
    from moscale_ros.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.path)
    parts = {
        name: {
            "parameters": int(sum(t.numel() for t in state.values())),
            "dtypes": sorted({str(t.dtype).replace("torch.", "") for t in state.values()}),
        }
        for name, state in ckpt.states.items()
    }
    summary = {
        "path": str(ckpt.path),
        "size_mb": round(Path(args.path).stat().st_size / 1e6, 2),
        "kind": ckpt.kind,
        "parts": parts,
        "configs": ckpt.configs,
        "extra": ckpt.extra,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['path']}: {summary['kind']}, {summary['size_mb']} MB")
    for name, part in parts.items():
        print(f"  {name:<14} {part['parameters']:>10,} values  {', '.join(part['dtypes'])}")
    for key, value in ckpt.extra.items():
        print(f"  {key}: {value}")
    return 0
