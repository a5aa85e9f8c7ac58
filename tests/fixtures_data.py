"""Data fixtures shared by every test module (loaded as a pytest plugin by tests/conftest.py).

Real clips only: the fixtures read the Bandai-Namco archive found by
``moscale_common.paths.shared_data_archive()`` and skip, saying so, only when that file is absent.

* ``bandai_archive`` (session): Path of the archive, or ``pytest.skip`` with the reason.
* ``real_bvh_dir`` (session): a folder with a small stratified subset of real BVH clips, extracted
  once per session in one streaming pass over the start of the archive: the first clip of every
  dataset-1 content (walk, run, dash, bow, bye, kick, punch, ...) and the first three of every
  dataset-2 content (walk, run, walk-turn-left/right, wave-*-hand, raise-up-*-hand): 46 clips, ~1 s.
  ``real_bvh(real_bvh_dir, "dataset-2", "wave-left-hand")`` returns the path of one of them.
* ``prepared_small`` (session): the ``moscale data prepare`` pipeline run on ``real_bvh_dir`` into a
  temporary cache; returns the cache folder (load it with ``moscale_ros.data.dataset.load_prepared``).
  Every dataset-2 content has one clip in each of train, val and test.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from moscale_common.paths import shared_data_archive
from moscale_ros.data.prepare import iter_clip_files

_STEM = re.compile(r"(dataset-\d+)_([a-z0-9-]+)_([a-z0-9-]+)_(\d+)")
CLIPS_PER_CONTENT = {"dataset-1": 1, "dataset-2": 3}
# Contents present in the shared copy; the streaming pass stops as soon as each has its clips
# (about 50 MB of the 550 MB unpacked), and reads to the end if one is missing.
EXPECTED_CONTENTS = {
    "dataset-1": (
        "walk",
        "walk-back",
        "walk-left",
        "walk-right",
        "run",
        "dash",
        "bow",
        "bye",
        "byebye",
        "guide",
        "respond",
        "call",
        "punch",
        "kick",
        "slash",
        "dance-short",
    ),
    "dataset-2": (
        "walk",
        "walk-turn-left",
        "walk-turn-right",
        "run",
        "wave-both-hands",
        "wave-left-hand",
        "wave-right-hand",
        "raise-up-both-hands",
        "raise-up-left-hand",
        "raise-up-right-hand",
    ),
}


def archive_or_skip() -> Path:
    path = shared_data_archive()
    if not path.is_file():
        pytest.skip(f"real motion data absent: {path} not found (Bandai-Namco archive, see shared/data/README.md)")
    return path


def real_bvh(folder: Path, dataset: str, content: str) -> Path:
    """First extracted clip of ``dataset``/``content`` in ``folder``."""
    matches = sorted(folder.glob(f"{dataset}_{content}_*.bvh"))
    if not matches:
        raise FileNotFoundError(f"no {dataset} {content} clip in {folder}")
    return matches[0]


@pytest.fixture(scope="session")
def bandai_archive() -> Path:
    return archive_or_skip()


@pytest.fixture(scope="session")
def real_bvh_dir(bandai_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bandai_subset")
    taken: dict[tuple[str, str], int] = defaultdict(int)
    for clip in iter_clip_files(bandai_archive, sidecars={}):  # one streaming pass, stops when all are found
        match = _STEM.fullmatch(clip.name)
        if not match:
            continue
        key = (match.group(1), match.group(2))
        if taken[key] >= CLIPS_PER_CONTENT.get(key[0], 1):
            continue
        (out / f"{clip.name}.bvh").write_bytes(clip.raw)
        taken[key] += 1
        if all(taken[(d, c)] >= CLIPS_PER_CONTENT[d] for d, cs in EXPECTED_CONTENTS.items() for c in cs):
            break
    if not taken:
        pytest.fail(f"{bandai_archive}: no BVH clips found in the archive")
    return out


@pytest.fixture(scope="session")
def prepared_small(real_bvh_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from moscale_ros.data.prepare import prepare

    cache = tmp_path_factory.mktemp("prepared_small") / "bandai"
    prepare(real_bvh_dir, cache, workers=1, progress=False, log=lambda _msg: None)
    return cache
