"""The shipped model's tokenizer on real clips: decoding more scales reconstructs better.

Needs the Bandai-Namco data (``prepared_small``: real clips through ``moscale data prepare``); it
skips only when ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

from moscale_common.paths import resource
from moscale_ros.data.dataset import load_prepared
from moscale_ros.evaluation.tokenizer import evaluate_reconstruction
from moscale_ros.generation.bundle import load_generator_parts


def test_reconstruction_error_falls_as_scales_are_added(prepared_small: Path):
    parts = load_generator_parts(resource("models/moscale-bandai.safetensors"))
    prepared = load_prepared(prepared_small, load_joints=False)
    clips = [clip.features for split in ("train", "val", "test") for clip in prepared.clips(split)]
    report = evaluate_reconstruction(parts.tokenizer, clips, parts.mean_D, parts.std_D)
    errors_mm = [p.mpjpe_mm for p in report.prefixes]
    assert len(errors_mm) == parts.tokenizer.num_scales >= 3
    assert all(later < earlier for earlier, later in zip(errors_mm, errors_mm[1:])), errors_mm
    assert report.zero_latent.mpjpe_mm > errors_mm[0]
    # All scales: within 2x of the 21.3 mm the README quotes for the test split (`moscale eval tokenizer`).
    assert errors_mm[-1] < 45.0, errors_mm
