"""`moscale data prepare/stats/check`: the cache from real clips, splits, statistics, bad clips, sources."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import real_bvh

from moscale_common.errors import ConfigError, DataError
from moscale_ros.commands import data as data_command
from moscale_ros.data.dataset import load_prepared
from moscale_ros.data.features import FEATURE_GROUPS
from moscale_ros.data.prepare import download_repository, format_summary, prepare, stratified_split


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moscale")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_prepared_small_cache(prepared_small: Path, real_bvh_dir: Path):
    summary = json.loads((prepared_small / "summary.json").read_text())
    n_files = len(list(real_bvh_dir.glob("*.bvh")))
    assert summary["clips"] == n_files and summary["skipped"] == 0
    assert summary["hours"] == pytest.approx(summary["frames"] / 20 / 3600)
    assert sum(v["clips"] for v in summary["splits"].values()) == n_files
    for content in ("wave-left-hand", "raise-up-both-hands", "walk-turn-right"):  # 3 clips each in the subset
        assert summary["per_content"][content] == {"train": 1, "val": 1, "test": 1}
    assert summary["per_content"]["bow"] == {"train": 1, "val": 0, "test": 0}
    prepared = load_prepared(prepared_small)
    assert {c.name for c in prepared.test} and not {c.name for c in prepared.test} & {c.name for c in prepared.train}
    train = np.concatenate([c.features for c in prepared.train])
    np.testing.assert_allclose(prepared.mean, train.mean(axis=0), atol=1e-4)  # statistics of train only
    for group in FEATURE_GROUPS.values():
        std = prepared.std[group]
        assert np.all(std == std[0]) and std[0] > 0
    clip = prepared.train[0]
    assert clip.joints is not None and clip.joints.shape == (clip.num_frames, 22, 3)
    assert len(clip.texts) == 8 and len(clip.heldout_texts) == 3


def test_split_is_deterministic_and_stratified():
    names = [f"dataset-2_walk_normal_{i:03d}" for i in range(20)] + [f"dataset-2_run_sad_{i:03d}" for i in range(10)]
    groups = ["walk"] * 20 + ["run"] * 10
    split = stratified_split(names, groups)
    assert split == stratified_split(names, groups)
    reordered = stratified_split(names[::-1], groups[::-1])[::-1]
    assert reordered == split  # depends on the clip, not on the file order
    assert [s for s, g in zip(split, groups) if g == "walk"].count("test") == 2
    assert [s for s, g in zip(split, groups) if g == "run"].count("val") == 1
    assert stratified_split(names, groups, seed=1) != split


def test_bad_clips_are_skipped_and_reported(real_bvh_dir: Path, tmp_path: Path):
    source = tmp_path / "mixed"
    source.mkdir()
    good = [real_bvh(real_bvh_dir, "dataset-2", c) for c in ("walk", "run", "wave-both-hands")]
    for path in good:
        shutil.copy(path, source)
    text = good[0].read_text()
    (source / "dataset-2_walk_normal_900.bvh").write_text(text[: len(text) // 2])  # truncated
    lines = text.splitlines()
    motion_row = lines.index(next(ln for ln in lines if ln.startswith("Frame Time"))) + 5
    tokens = lines[motion_row].split()
    lines[motion_row] = " ".join(tokens[:3] + ["nan"] + tokens[4:])
    (source / "dataset-2_walk_normal_902.bvh").write_text("\n".join(lines))  # NaN value
    (source / "dataset-2_walk_normal_903.bvh").write_text(text.split("Frames:")[0] + "Frames: 0\nFrame Time: 0.033\n")
    (source / "dataset-9_walk_normal_904.bvh").write_text(
        text.replace("Hips", "Pelvis").replace("Spine", "Torso")
    )  # unknown rig
    (source / "take_07.bvh").write_text(text)  # no labels, no sidecar
    (source / "my_take.bvh").write_text(text)  # custom clip with its own descriptions
    (source / "my_take.txt").write_text("a person walks forward\nsomeone strolls ahead\n")
    summary = prepare(source, tmp_path / "cache", workers=2, progress=False, log=lambda _m: None)
    skipped = {item["name"]: item["reason"] for item in summary["skipped_clips"]}
    assert summary["clips"] == 4 and summary["skipped"] == 5
    assert "truncated motion data" in skipped["dataset-2_walk_normal_900"]
    assert "non-finite" in skipped["dataset-2_walk_normal_902"]
    assert "zero-length" in skipped["dataset-2_walk_normal_903"]
    assert "unknown rig" in skipped["dataset-9_walk_normal_904"] and "Pelvis" in skipped["dataset-9_walk_normal_904"]
    assert "no labels" in skipped["take_07"]
    for name, reason in skipped.items():
        assert name in reason  # every reason names the file
    assert "skipped take_07" in format_summary(summary)
    prepared = load_prepared(tmp_path / "cache")
    custom = next(c for split in prepared.splits.values() for c in split if c.name == "my_take")
    assert custom.texts == ["a person walks forward", "someone strolls ahead"] and custom.content == "custom"


def test_prepare_from_an_archive(real_bvh_dir: Path, tmp_path: Path):
    archive = tmp_path / "clips.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(real_bvh_dir.glob("dataset-1_*.bvh"))[:3]:
            tar.add(path, arcname=f"dataset/data/{path.name}")
    summary = prepare(archive, tmp_path / "cache", workers=1, progress=False, log=lambda _m: None)
    assert summary["clips"] == 3 and summary["per_dataset"] == {"dataset-1": 3}
    assert not any(p.name.startswith(".prepare-") for p in tmp_path.iterdir())  # scratch cleaned up
    # The public repository's layout: a zip holding one data.zip per dataset.
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for path in sorted(real_bvh_dir.glob("dataset-2_wave-*.bvh"))[:2]:
            zf.write(path, arcname=path.name)
    repository = tmp_path / "repository.zip"
    with zipfile.ZipFile(repository, "w") as zf:
        zf.writestr("Bandai-Namco-Research-Motiondataset-master/dataset/Motiondataset-2/data.zip", inner.getvalue())
        zf.writestr("Bandai-Namco-Research-Motiondataset-master/README.md", "readme")
    summary = prepare(repository, tmp_path / "cache", workers=2, progress=False, log=lambda _m: None)
    assert summary["clips"] == 2 and summary["per_dataset"] == {"dataset-2": 2}


def tarfile_bytes(tmp_path: Path) -> bytes:
    big = tmp_path / "big.bvh"
    big.write_bytes(np.random.default_rng(0).bytes(20000))
    archive = tmp_path / "whole.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(big, arcname="dataset-1_walk_normal_001.bvh")
    return archive.read_bytes()


def test_bad_sources_raise(tmp_path: Path):
    with pytest.raises(DataError, match="nowhere: source not found"):
        prepare(tmp_path / "nowhere", tmp_path / "cache", progress=False, log=lambda _m: None)
    not_archive = tmp_path / "notes.tar.xz"
    not_archive.write_text("hello")
    with pytest.raises(DataError, match="notes.tar.xz: not a tar or zip archive"):
        prepare(not_archive, tmp_path / "cache", progress=False, log=lambda _m: None)
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(tarfile_bytes(tmp_path)[:300])
    with pytest.raises(DataError, match="broken.tar.gz: corrupt or truncated archive"):
        prepare(broken, tmp_path / "cache", progress=False, log=lambda _m: None)
    with pytest.raises(DataError, match="empty: no .bvh files found"):
        prepare(tmp_path / "empty", tmp_path / "cache", progress=False, log=lambda _m: None)
    with pytest.raises(ConfigError, match="unknown skeleton map 'no_such_rig'"):
        prepare(tmp_path / "empty", tmp_path / "cache", skeleton_map="no_such_rig", progress=False, log=print)
    assert not (tmp_path / "cache").exists()


def test_download_fails_clearly_offline(tmp_path: Path):
    with pytest.raises(DataError) as info:
        download_repository(tmp_path, urls=["http://127.0.0.1:9/Bandai-Namco-Research-Motiondataset.zip"], timeout=5)
    message = str(info.value)
    assert "cannot download" in message and "127.0.0.1:9" in message
    assert "BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset" in message and "--source" in message


def test_cli_stats_and_check(prepared_small: Path, capsys):
    assert _run_cli(["data", "stats", "--cache", str(prepared_small)]) == 0
    out = capsys.readouterr().out
    assert "clips: 46" in out and "wave-left-hand" in out and "train" in out
    assert _run_cli(["data", "check", "--cache", str(prepared_small)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "mean error" in ln)
    mean_mm, max_mm = float(line.split()[2]), float(line.split()[6])
    assert mean_mm < 0.01 and max_mm < 1.0


def test_cli_prepare_and_convert(real_bvh_dir: Path, tmp_path: Path, capsys):
    source = tmp_path / "two"
    source.mkdir()
    for content in ("walk", "bow"):
        shutil.copy(real_bvh(real_bvh_dir, "dataset-1", content), source)
    out_dir = tmp_path / "cache"
    assert _run_cli(["data", "prepare", "--source", str(source), "--out", str(out_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "clips: 2" in out and "walk" in out and "bow" in out and f"prepared {out_dir}" in out
    npy, bvh = tmp_path / "walk.npy", tmp_path / "walk_canonical.bvh"
    clip = real_bvh(real_bvh_dir, "dataset-1", "walk")
    assert _run_cli(["data", "convert", str(clip), "--npy", str(npy), "--out-bvh", str(bvh)]) == 0
    joints = np.load(npy)
    assert joints.shape[1:] == (22, 3) and bvh.read_text().startswith("HIERARCHY")
