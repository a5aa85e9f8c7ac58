"""The evaluation's real reference is symmetric with the generated rows: the FID reference is real
motion of other clips with the test windows' labels (content, and style where one exists) and
lengths, windowed as they are (real clips: needs ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moscale_ros.data.dataset import load_prepared
from moscale_ros.evaluation.evaluate import ProtocolConfig, load_test_set, matched_reference


def test_fid_reference_matches_labels_and_lengths_from_other_clips(prepared_small: Path):
    prepared = load_prepared(prepared_small, load_joints=False)
    cfg = ProtocolConfig(min_frames=24, max_frames=120)
    test = load_test_set(prepared, "test", cfg)
    windows, counts = matched_reference(prepared, test, cfg, ["val", "train"])
    assert len(windows) == len(test) and sum(counts.values()) == len(test)
    assert counts["matched"] + counts["matched_content"] >= 0.8 * len(test), counts
    pool = {c.name: c for split in ("val", "train") for c in prepared.clips(split)}
    matched_contents = matched_styles = 0
    for window, content, style, frames, test_window in zip(
        windows, test.contents, test.styles, test.frames, test.features
    ):
        assert window.shape[1] == 263 and window.shape[0] <= frames
        assert not any(np.array_equal(window, t) for t in test.features)  # never a test window itself
        # Find the clip the window came from: it is a slice of exactly one pool clip.
        sources = [
            c for c in pool.values()
            if c.num_frames >= len(window) and _contains(np.asarray(c.features), window)
        ]  # fmt: skip
        assert sources, "the reference window is not a slice of a val/train clip"
        matched_contents += any(c.content == content for c in sources) and window.shape[0] == frames
        matched_styles += any(c.content == content and c.style == style for c in sources) and len(window) == frames
        # taken as the test windows are: centred in its clip
        assert any(_contains(np.asarray(c.features)[(c.num_frames - frames) // 2 :], window) for c in sources)
        assert test_window.shape[0] == frames
    assert matched_contents == counts["matched"] + counts["matched_content"]
    assert matched_styles >= counts["matched"] > 0, counts
    again, _ = matched_reference(prepared, test, cfg, ["val", "train"])
    assert all(np.array_equal(a, b) for a, b in zip(windows, again))  # seeded


def _contains(features_TD: np.ndarray, window_TD: np.ndarray) -> bool:
    first = np.flatnonzero(np.all(features_TD == window_TD[0], axis=1))
    return any(np.array_equal(features_TD[s : s + len(window_TD)], window_TD) for s in first)
