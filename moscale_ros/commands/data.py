"""``moscale data {prepare,stats,check,convert}``: build, inspect and verify the motion data cache.

* ``prepare``: BVH archive/folder (or ``--download``) -> canonical joints, features, texts, splits.
* ``stats``: the summary of an existing cache (or HumanML3D folder).
* ``check``: feature round-trip error (mm) on real clips and forward-kinematics speed.
* ``convert``: one BVH (any rig with a skeleton map) -> canonical joints ``.npy`` and/or a canonical BVH.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="prepare and inspect motion data")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser("prepare", help="convert BVH clips into the training cache")
    p.add_argument(
        "--source",
        default=None,
        help="archive (.tar.xz/.zip) or folder of BVH files (default: the shared Bandai-Namco archive)",
    )
    p.add_argument("--download", action="store_true", help="download the public Bandai-Namco repository first")
    p.add_argument("--out", default=None, help="cache folder (default: cache/data/bandai)")
    p.add_argument("--skeleton-map", default=None, help="skeleton map name or YAML (default: detect per rig)")
    p.add_argument("--workers", type=int, default=None, help="conversion processes (default: min(2, CPUs))")
    p.add_argument("--texts-per-clip", type=int, default=8, help="training descriptions per clip")
    p.add_argument("--heldout-texts-per-clip", type=int, default=3, help="held-out descriptions per clip")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--limit", type=int, default=None, help="convert only the first N clips (quick trials)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare)

    s = actions.add_parser("stats", help="print the summary of a prepared cache or HumanML3D folder")
    s.add_argument("--cache", default=None, help="cache folder (default: cache/data/bandai)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=_stats)

    c = actions.add_parser("check", help="feature round-trip error on real clips, FK speed")
    c.add_argument("--cache", default=None, help="prepared cache (default: cache/data/bandai)")
    c.add_argument("--clips", type=int, default=0, help="number of clips to check (default: all)")
    c.add_argument(
        "--bvh",
        default=None,
        help="BVH file for the FK speed figure (default: the longest cached clip as a canonical BVH)",
    )
    c.add_argument("--fk-frames", type=int, default=10000, help="frames of the FK speed test")
    c.set_defaults(func=_check)

    v = actions.add_parser("convert", help="one BVH -> canonical joints (.npy) and/or canonical BVH")
    v.add_argument("bvh", help="input BVH file")
    v.add_argument("--skeleton-map", default=None, help="skeleton map name or YAML (default: detect)")
    v.add_argument("--npy", default=None, help="write canonical joints (T, 22, 3) here")
    v.add_argument("--out-bvh", default=None, help="write the canonical skeleton motion as BVH here")
    v.set_defaults(func=_convert)


def _prepare(args: argparse.Namespace) -> int:
    from moscale_ros.data.prepare import default_cache_dir, format_summary, prepare

    out = args.out or default_cache_dir()
    summary = prepare(
        args.source,
        out,
        download=args.download,
        skeleton_map=args.skeleton_map,
        workers=args.workers,
        texts_per_clip=args.texts_per_clip,
        heldout_texts_per_clip=args.heldout_texts_per_clip,
        seed=args.seed,
        limit=args.limit,
        progress=not args.no_progress,
    )
    print(format_summary(summary))
    print(f"prepared {out} in {summary['seconds']:.1f} s")
    return 0


def _stats(args: argparse.Namespace) -> int:
    import json

    from moscale_ros.data.dataset import load_prepared
    from moscale_ros.data.prepare import format_summary

    prepared = load_prepared(args.cache, load_joints=False, mmap=True)
    if args.json:
        print(json.dumps(prepared.summary, indent=1))
    else:
        print(f"cache: {prepared.cache_dir}")
        print(format_summary(prepared.summary))
    return 0


def _check(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from moscale_common.errors import DataError
    from moscale_ros.data.bvh import forward_kinematics, read_bvh
    from moscale_ros.data.canonical_bvh import joints_to_bvh
    from moscale_ros.data.dataset import load_prepared
    from moscale_ros.data.features import features_to_joints

    prepared = load_prepared(args.cache, load_joints=True)
    clips = [c for split in prepared.splits.values() for c in split if c.joints is not None]
    if args.clips:
        clips = clips[: args.clips]
    if not clips:
        raise DataError(f"{prepared.cache_dir}: no clips with joint positions to check")
    errors_mm = []
    worst = (0.0, "")
    for clip in clips:
        err = np.linalg.norm(features_to_joints(np.asarray(clip.features)) - clip.joints, axis=-1) * 1000.0
        errors_mm.append(err.ravel())
        if err.max() > worst[0]:
            worst = (float(err.max()), clip.name)
    all_err = np.concatenate(errors_mm)
    print(
        f"feature round trip (joints -> 263-d features -> joints) on {len(clips)} clips, {all_err.size // 22} frames:"
    )
    print(f"  mean error {all_err.mean():.6f} mm   max error {all_err.max():.6f} mm (clip {worst[1]})")

    if args.bvh:
        motion, label = read_bvh(args.bvh), Path(args.bvh).name
    else:
        motion, label = joints_to_bvh(max(clips, key=lambda c: c.num_frames).joints), "canonical skeleton"
    motion.values = np.tile(motion.values, (-(-args.fk_frames // motion.num_frames), 1))[: args.fk_frames]
    forward_kinematics(motion)  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        forward_kinematics(motion)
        times.append(time.perf_counter() - t0)
    print(
        f"forward kinematics ({label}): {motion.num_frames} frames x {motion.num_joints} joints in "
        f"{min(times) * 1000:.1f} ms (best of 5; median {sorted(times)[2] * 1000:.1f} ms)"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    import numpy as np

    from moscale_ros.data.skeleton import bvh_to_canonical

    joints, fps = bvh_to_canonical(args.bvh, args.skeleton_map)
    print(f"{args.bvh}: {joints.shape[0]} frames at {fps:g} fps ({joints.shape[0] / fps:.2f} s)")
    if args.npy:
        np.save(args.npy, joints)
        print(f"wrote {args.npy}")
    if args.out_bvh:
        from moscale_ros.data.canonical_bvh import write_canonical_bvh

        write_canonical_bvh(args.out_bvh, joints, fps)
        print(f"wrote {args.out_bvh}")
    return 0
