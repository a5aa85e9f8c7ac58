"""``moscale data prepare``: BVH clips -> canonical joints, 263-d features, texts and splits, cached once.

Sources: the Bandai-Namco archive (``.tar.xz``/``.tar.gz``/``.zip``, read as a stream: nothing is
unpacked to disk), a folder of BVH files (searched recursively), or a download of the public
repository; ``.zip`` files inside any of them are read too (the repository ships ``data.zip``).
Clips are converted in batches by worker processes. Clip labels come from Bandai file names
``dataset-N_{content}_{style}_{id}.bvh``; any other BVH needs a sidecar ``<name>.txt`` with one
description per line (content and style are then ``custom``). A clip that cannot be converted or
labelled is skipped and listed in the summary, never dropped silently.

Cache layout (``<cache>/``, format :data:`CACHE_FORMAT` version :data:`CACHE_VERSION`):

* ``features.npy`` (N, 263) float32 and ``joints.npy`` (N, 22, 3) float32: all clips, concatenated;
  a clip owns rows ``start : start + num_features`` of both (a clip of T canonical joint frames has
  T - 1 feature frames; its last joint frame is dropped so that joint row t belongs to feature row t,
  and ``features_to_joints(features)`` reproduces ``joints``);
* ``clips.json``: per clip name, dataset, content, style, split, row ranges, texts, heldout_texts, source;
* ``mean.npy``, ``std.npy`` (263,): normalisation statistics of the training split (std averaged
  inside each feature group, see :data:`moscale_ros.data.features.FEATURE_GROUPS`);
* ``summary.json`` (counts, hours, per-content counts, skipped clips) and ``meta.json``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import lzma
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from moscale_common.errors import DataError, MoScaleError
from moscale_common.paths import cache_root, shared_data_archive
from moscale_ros.data.bvh import parse_bvh_bytes
from moscale_ros.data.features import FEATURE_GROUPS, joints_to_features
from moscale_ros.data.skeleton import SkeletonMap, bvh_motion_to_canonical, load_skeleton_map
from moscale_ros.data.text import describe_clip

CACHE_FORMAT = "moscale-prepared-motion"
CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
REPOSITORY = "BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset"
REPOSITORY_URLS = (
    f"https://github.com/{REPOSITORY}/archive/refs/heads/master.zip",
    f"https://github.com/{REPOSITORY}/archive/refs/heads/main.zip",
)
BANDAI_NAME = re.compile(r"^(dataset-\d+)_([a-z0-9-]+)_([a-z0-9-]+)_(\d+)$")
STD_FLOOR = 1e-3


def default_cache_dir() -> Path:
    return cache_root() / "data" / "bandai"


@dataclass
class ClipLabels:
    """Labels of one clip: dataset, content, style, and its own descriptions if a sidecar gave them."""

    dataset: str
    content: str
    style: str
    texts: tuple[str, ...] = ()


def clip_labels(name: str, source: str, sidecar_text: str | None = None) -> ClipLabels:
    """Labels from a Bandai file name ``dataset-N_{content}_{style}_{id}``, else from a sidecar
    ``<name>.txt`` (one description per line; content and style ``custom``); DataError otherwise."""
    match = BANDAI_NAME.match(name)
    if match:
        return ClipLabels(match.group(1), match.group(2), match.group(3))
    if sidecar_text is not None:
        lines = [ln.split("#")[0].strip() for ln in sidecar_text.splitlines()]
        texts = tuple(ln for ln in lines if ln)
        if texts:
            return ClipLabels("custom", "custom", "custom", texts)
    raise DataError(
        f"{source}: no labels: the name does not follow dataset-N_{{content}}_{{style}}_{{id}}.bvh and there is no "
        f"{name}.txt next to it with one description per line"
    )


# ------------------------------------------------------------------------------------------- sources


def download_repository(dest: Path, urls: Iterable[str] = REPOSITORY_URLS, timeout: float = 30.0) -> Path:
    """Download the public Bandai-Namco repository as a zip into ``dest``; DataError when offline."""
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        target = dest / "repository.zip"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out)
            return target
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise DataError(
        "cannot download the Bandai-Namco motion dataset (no internet?): "
        + "; ".join(errors)
        + f". Get https://github.com/{REPOSITORY} another way and run "
        "`moscale data prepare --source <folder or archive>`"
    )


@dataclass
class ClipFile:
    """One BVH file of a source: its name (file stem), where it came from, and its bytes."""

    name: str
    label: str
    raw: bytes


def _iter_zip(data: bytes | Path, label: str, sidecars: dict[str, str]) -> Iterator[ClipFile]:
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as zf:
            for member in sorted(zf.namelist()):
                yield from _route(member, lambda m=member: zf.read(m), f"{label}:{member}", sidecars)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"{label}: corrupt or truncated zip archive ({exc})") from None


def _route(name: str, read: Callable[[], bytes], label: str, sidecars: dict[str, str]) -> Iterator[ClipFile]:
    lower = name.lower()
    if lower.endswith(".bvh"):
        yield ClipFile(Path(name).stem, label, read())
    elif lower.endswith(".txt"):
        sidecars[Path(name).stem] = read().decode("utf-8", errors="replace")
    elif lower.endswith(".zip"):
        yield from _iter_zip(read(), label, sidecars)


def iter_clip_files(source: Path, sidecars: dict[str, str]) -> Iterator[ClipFile]:
    """Every ``.bvh`` in a folder (recursively), a tar archive (any compression, streamed) or a zip,
    descending into nested zips; ``.txt`` files met on the way are stored in ``sidecars`` by stem."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield from _route(path.name, path.read_bytes, str(path), sidecars)
    elif tarfile.is_tarfile(source):
        try:
            with tarfile.open(source, mode="r|*") as tar:
                for member in tar:
                    if member.isfile():
                        handle = tar.extractfile(member)
                        if handle is not None:
                            yield from _route(member.name, handle.read, f"{source}:{member.name}", sidecars)
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise DataError(f"{source}: corrupt or truncated archive ({exc})") from None
    elif zipfile.is_zipfile(source):
        yield from _iter_zip(source, str(source), sidecars)
    else:
        raise DataError(f"{source}: not a tar or zip archive (pass an archive or a folder of BVH files)")


# ------------------------------------------------------------------------------------------ converting


def convert_clip(raw: bytes, label: str, skeleton_map=None) -> tuple[np.ndarray, np.ndarray]:
    """Canonical joints (T, 22, 3) and features (T - 1, 263) of one BVH file's bytes (float32)."""
    joints = bvh_motion_to_canonical(parse_bvh_bytes(raw, label), skeleton_map)
    return joints, joints_to_features(joints)


def _convert_worker(job: tuple[int, ClipFile, object]) -> tuple[int, object, object]:
    index, clip, skeleton_map = job
    try:
        joints, feats = convert_clip(clip.raw, clip.label, skeleton_map)
        return index, joints, feats
    except MoScaleError as exc:
        return index, None, str(exc)
    except Exception as exc:  # a clip that breaks conversion is reported, not fatal
        return index, None, f"{clip.label}: unexpected {type(exc).__name__}: {exc}"


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stratified_split(
    names: list[str], groups: list[str], fractions: tuple[float, float] = (0.1, 0.1), seed: int = 0
) -> list[str]:
    """Split per clip, deterministic and stratified by group: inside each group clips are ordered by a
    hash of (seed, name) and the first ones go to test, then val, the rest to train. A group of n >= 3
    gets round(n * fraction) but at least one clip in each of val and test; n = 2 gives one test clip;
    n = 1 stays in train."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    split = ["train"] * len(names)
    for members in by_group.values():
        members.sort(key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest())
        n = len(members)
        n_val = max(1, round(n * fractions[0])) if n >= 3 else 0
        n_test = max(1, round(n * fractions[1])) if n >= 2 else 0
        for k, i in enumerate(members):
            split[i] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return split


def normalization_stats(train_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (263,) and std (263,) of training features; std averaged inside each feature group
    (HumanML3D practice: all coordinates of a group share one scale) and floored at 1e-3."""
    mean = train_feats.mean(axis=0, dtype=np.float64)
    std = train_feats.std(axis=0, dtype=np.float64)
    for group in FEATURE_GROUPS.values():
        std[group] = std[group].mean()
    return mean.astype(np.float32), np.maximum(std, STD_FLOOR).astype(np.float32)


def summarize(clips: list[dict], skipped: list[dict], fps: float = 20.0) -> dict:
    """Counts per split, hours, per-content and per-style counts (overall and per split)."""
    per_split = {s: [c for c in clips if c["split"] == s] for s in SPLITS}
    content_key = [f"{c['content']}" for c in clips]
    per_content = Counter(content_key)
    per_content_split = {
        k: {s: sum(1 for c in per_split[s] if c["content"] == k) for s in SPLITS} for k in sorted(per_content)
    }
    frames = sum(c["num_features"] + 1 for c in clips)  # canonical joint frames
    return {
        "clips": len(clips),
        "skipped": len(skipped),
        "skipped_clips": skipped,
        "hours": frames / fps / 3600.0,
        "frames": frames,
        "fps": fps,
        "splits": {
            s: {"clips": len(v), "hours": sum(c["num_features"] + 1 for c in v) / fps / 3600.0}
            for s, v in per_split.items()
        },
        "per_content": per_content_split,
        "per_dataset": dict(Counter(c["dataset"] for c in clips)),
        "per_style": dict(sorted(Counter(c["style"] for c in clips).items())),
    }


def format_summary(summary: dict) -> str:
    """Human-readable summary (what `moscale data prepare` and `moscale data stats` print)."""
    lines = [
        f"clips: {summary['clips']}   hours: {summary['hours']:.3f}   frames: {summary['frames']} "
        f"at {summary['fps']:g} fps   skipped: {summary['skipped']}",
        "splits: " + ", ".join(f"{s} {v['clips']} ({v['hours']:.3f} h)" for s, v in summary["splits"].items()),
        "datasets: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["per_dataset"].items())),
        f"{'content':<22}{'total':>7}{'train':>7}{'val':>6}{'test':>6}",
    ]
    for content, counts in summary["per_content"].items():
        lines.append(f"{content:<22}{sum(counts.values()):>7}{counts['train']:>7}{counts['val']:>6}{counts['test']:>6}")
    for item in summary["skipped_clips"]:
        lines.append(f"skipped {item['name']}: {item['reason']}")
    return "\n".join(lines)


def _progress_bar(total: int | None, enabled: bool, desc: str):
    return tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, dynamic_ncols=True, disable=not enabled)


def _resolve_source(source: str | Path | None, download: bool, scratch: Path, log: Callable[[str], None]) -> Path:
    if download:
        log(f"downloading https://github.com/{REPOSITORY} ...")
        return download_repository(scratch / "download")
    if source is None:
        source = shared_data_archive()
        if not Path(source).exists():
            raise DataError(
                f"no motion data source: {source} does not exist. Pass --source <archive or folder of BVH files>, "
                f"or --download to fetch https://github.com/{REPOSITORY}"
            )
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: source not found (expected an archive or a folder of BVH files)")
    return source


def prepare(
    source: str | Path | None = None,
    cache_dir: str | Path | None = None,
    *,
    download: bool = False,
    skeleton_map=None,
    workers: int | None = None,
    texts_per_clip: int = 8,
    heldout_texts_per_clip: int = 3,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Convert a source of BVH clips into the prepared cache at ``cache_dir`` and return its summary.

    ``skeleton_map`` (name, path or map) applies to every clip; ``None`` picks the shipped map that fits
    each rig. ``limit`` keeps the first N clips met (in the source's order) for quick trials. The cache
    is written to a temporary folder and moved into place at the end, so an interrupted run leaves the
    old one.
    """
    started = time.perf_counter()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".prepare-", dir=cache_dir.parent))
    try:
        if skeleton_map is not None and not isinstance(skeleton_map, SkeletonMap):
            skeleton_map = load_skeleton_map(skeleton_map)  # bad map: fail before reading any clip
        src = _resolve_source(source, download, scratch, log)
        total = sum(1 for p in src.rglob("*.bvh")) if src.is_dir() else None
        if total is not None and limit is not None:
            total = min(total, limit)
        log(f"reading {src} ...")
        sidecars: dict[str, str] = {}
        files: list[ClipFile] = []  # names and labels only; bytes are dropped after conversion
        converted: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        failures: dict[int, str] = {}
        stream = itertools.islice(iter_clip_files(src, sidecars), limit)
        workers = workers or min(2, os.cpu_count() or 1)
        pool = None
        if workers > 1:
            pool = multiprocessing.get_context("fork").Pool(workers)

        def collect(results) -> None:
            for index, joints, feats in results:
                if joints is None:
                    failures[index] = feats
                else:
                    converted[index] = (joints, feats)
                bar.update(1)

        try:
            with _progress_bar(total, progress, "converting") as bar:
                pending = None  # the workers convert batch k while this process reads batch k + 1
                for batch in _batches(stream, 64):
                    jobs = [(len(files) + k, clip, skeleton_map) for k, clip in enumerate(batch)]
                    files.extend(ClipFile(c.name, c.label, b"") for c in batch)
                    if pool is None:
                        collect(map(_convert_worker, jobs))
                        continue
                    submitted = pool.map_async(_convert_worker, jobs)
                    if pending is not None:
                        collect(pending.get())
                    pending = submitted
                if pending is not None:
                    collect(pending.get())
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        if not files:
            raise DataError(f"{src}: no .bvh files found")
        duplicates = [n for n, k in Counter(f.name for f in files).items() if k > 1]
        if duplicates:
            raise DataError(f"{src}: duplicate clip names {duplicates[:5]}; clip names must be unique")

        skipped = [{"name": files[i].name, "reason": reason} for i, reason in failures.items()]
        labels: dict[int, ClipLabels] = {}
        for i in sorted(converted):
            try:
                labels[i] = clip_labels(files[i].name, files[i].label, sidecars.get(files[i].name))
            except DataError as exc:
                skipped.append({"name": files[i].name, "reason": str(exc)})
        skipped.sort(key=lambda item: item["name"])
        if not labels:
            raise DataError(
                f"{src}: none of the {len(files)} clip(s) could be converted; first error: "
                f"{skipped[0]['reason'] if skipped else 'none'}"
            )

        kept = sorted(labels)
        split = stratified_split(
            [files[i].name for i in kept], [f"{labels[i].dataset}/{labels[i].content}" for i in kept], seed=seed
        )
        clips, feats_list, joints_list = [], [], []
        row = 0
        for i, clip_split in zip(kept, split):
            name, lab = files[i].name, labels[i]
            joints, feats = converted[i]
            if lab.texts:
                texts, heldout = list(lab.texts), []
            else:
                texts = describe_clip(name, lab.content, lab.style, texts_per_clip)
                heldout = describe_clip(name, lab.content, lab.style, heldout_texts_per_clip, heldout=True)
            clips.append({
                "name": name, "dataset": lab.dataset, "content": lab.content, "style": lab.style,
                "split": clip_split, "start": row, "num_features": int(feats.shape[0]),
                "texts": texts, "heldout_texts": heldout, "source": files[i].label,
            })  # fmt: skip
            feats_list.append(feats)
            joints_list.append(joints[:-1])
            row += feats.shape[0]
        all_feats = np.concatenate(feats_list).astype(np.float32)
        train_rows = np.concatenate(
            [np.arange(c["start"], c["start"] + c["num_features"]) for c in clips if c["split"] == "train"]
            or [np.arange(all_feats.shape[0])]
        )
        mean, std = normalization_stats(all_feats[train_rows])
        summary = summarize(clips, skipped)
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "fps": 20.0,
            "feature_dim": int(all_feats.shape[1]),
            "num_joints": 22,
            "source": str(src),
            "skeleton_map": str(getattr(skeleton_map, "name", skeleton_map) or "auto"),
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        staging = scratch / "cache"
        staging.mkdir()
        np.save(staging / "features.npy", all_feats)
        np.save(staging / "joints.npy", np.concatenate(joints_list).astype(np.float32))
        np.save(staging / "mean.npy", mean)
        np.save(staging / "std.npy", std)
        (staging / "clips.json").write_text(json.dumps(clips, indent=1), encoding="utf-8")
        summary["seconds"] = round(time.perf_counter() - started, 2)
        (staging / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        (staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        if cache_dir.exists():
            os.replace(cache_dir, scratch / "previous")  # removed with the scratch folder
        os.replace(staging, cache_dir)
        return summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
