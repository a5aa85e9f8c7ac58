"""The vocabulary check (moscale_ros/generation/vocabulary.py): prototypes, confidence, storage in
the model file, and the shipped model's verdicts with the real MiniLM text encoder."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from fixtures_data import archive_or_skip
from fixtures_ros import write_untrained_generator

from moscale_common.errors import CheckpointError
from moscale_common.paths import resource
from moscale_ros.checkpoint import load_checkpoint
from moscale_ros.cli import main
from moscale_ros.data.prepare import default_cache_dir, prepare
from moscale_ros.evaluation.vocabulary import cross_validated_rates
from moscale_ros.generation.bundle import load_generator_parts
from moscale_ros.generation.generator import MotionGenerator
from moscale_ros.generation.vocabulary import (
    Vocabulary,
    auroc,
    build_prototypes,
    calibrate_threshold,
    kmeans_unit,
)
from moscale_ros.training.vocabulary import store_vocabulary

SHIPPED = resource("models/moscale-bandai.safetensors")


def small_vocabulary(dim: int = 4) -> Vocabulary:
    """Two skills along the first two axes around a centre at the origin."""
    rng = np.random.default_rng(0)
    pooled = {
        "walk": np.eye(dim)[0] + 0.05 * rng.standard_normal((6, dim)),
        "kick": np.eye(dim)[1] + 0.05 * rng.standard_normal((3, dim)),
    }
    skills, prototypes, owners, center = build_prototypes({k: ["x"] * len(v) for k, v in pooled.items()}, pooled, 2)
    return Vocabulary(
        skills, prototypes, owners, center, clips={"walk": 200, "kick": 1}, typical_seconds={"walk": 6.0, "kick": 2.0},
        styles={"normal": 201}, threshold=0.5, text_encoder="all-MiniLM-L6-v2", rare_clips=5,
    )  # fmt: skip


def test_scores_are_the_best_cosine_to_a_skills_prototypes():
    vocabulary = small_vocabulary()
    assert vocabulary.prototypes_PD.shape == (4, 4)
    np.testing.assert_allclose(np.linalg.norm(vocabulary.prototypes_PD, axis=1), 1.0, rtol=1e-5)
    center = vocabulary.center_D
    query = np.stack([np.eye(4)[0], np.eye(4)[1], center + np.eye(4)[3]])  # like walk, like kick, neither
    walk, kick, other = vocabulary.match(["a", "b", "c"], query)
    assert (walk.status, walk.skill) == ("known", "walk") and walk.confidence > 0.9
    assert (kick.status, kick.skill, kick.clips) == ("weak", "kick", 1)  # known but fewer than 5 clips
    assert other.status == "unknown" and other.confidence < 0.5
    assert [name for name, _ in walk.nearest] == ["walk", "kick"]
    assert "nearest: walk" in walk.describe() and "only 1 training clip" in kick.describe()
    assert vocabulary.match(["b"], query[1:2], rare_clips=1)[0].status == "known"
    assert vocabulary.weak_skills() == ["kick"]


def test_kmeans_is_deterministic_and_returns_unit_centres():
    rng = np.random.default_rng(1)
    points = rng.standard_normal((50, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    a, b = kmeans_unit(points, 5), kmeans_unit(points, 5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    assert kmeans_unit(points[:3], 5).shape == (3, 8)


def test_threshold_calibration_and_auroc():
    known, unknown = np.array([0.9, 0.8, 0.7, 0.45]), np.array([0.2, 0.3, 0.5])
    assert auroc(known, unknown) == pytest.approx(11 / 12)
    assert auroc(np.array([0.9]), np.array([0.1])) == 1.0
    threshold = calibrate_threshold(known, unknown)
    assert threshold == pytest.approx(0.6)  # 3/4 known accepted, no unknown accepted
    assert auroc(np.array([0.5]), np.array([0.5])) == 0.5


def test_cross_validated_rates_calibrate_on_one_half_and_measure_on_the_other():
    known, unknown = np.array([0.9, 0.8, 0.85, 0.3]), np.array([0.1, 0.2, 0.15, 0.7])
    rates = cross_validated_rates(known, unknown)
    # fold 0 calibrates on (0.9, 0.85) vs (0.1, 0.15): threshold 0.5, then 0.3 is rejected, 0.7 accepted
    assert rates == {"false_accept_rate": 0.25, "false_reject_rate": 0.25}


def test_the_vocabulary_is_stored_in_the_model_file_without_changing_the_rest(tmp_path):
    path = write_untrained_generator(tmp_path / "model.safetensors")
    before = load_checkpoint(path)
    assert load_generator_parts(path).vocabulary is None
    vocabulary = small_vocabulary(384)
    out = store_vocabulary(path, vocabulary, tmp_path / "with-vocabulary.safetensors")
    after = load_checkpoint(out)
    for part, state in before.states.items():
        for key, tensor in state.items():
            assert torch.equal(after.states[part][key], tensor) and after.states[part][key].dtype == tensor.dtype
    assert {k: v for k, v in after.configs.items() if k != "vocabulary"} == before.configs
    loaded = load_generator_parts(out).vocabulary
    assert loaded.skills == vocabulary.skills and loaded.threshold == vocabulary.threshold
    np.testing.assert_array_equal(loaded.prototypes_PD, vocabulary.prototypes_PD)
    assert loaded.clips == {"walk": 200, "kick": 1} and loaded.typical_seconds["kick"] == 2.0


def test_a_malformed_vocabulary_part_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="malformed vocabulary"):
        Vocabulary.from_parts({"prototypes": torch.zeros(2, 4)}, {"skills": ["a"]}, "model.safetensors")


# ---- the shipped model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> MotionGenerator:
    if not SHIPPED.is_file():
        pytest.skip("the shipped model is not in this checkout")
    generator = MotionGenerator.from_checkpoint(None, device="cpu", warm_up=False)
    assert generator.vocabulary is not None, "the shipped model has no vocabulary: run `moscale vocab build`"
    return generator


def test_the_shipped_model_knows_its_skills_and_refuses_the_rest(shipped):
    unknown = ["do a backflip", "sit down on the chair", "pick up the box"]
    known = {"move forward at a steady pace": "walk", "greet someone by waving your right hand": None}
    weak = ["throw a punch", "kick something in front of you"]
    for match in shipped.match_skills(unknown):
        assert match.status == "unknown", match.describe()
        assert len(match.nearest) == 3
    for (text, skill), match in zip(known.items(), shipped.match_skills(list(known))):
        assert match.status == "known", (text, match.describe())
        assert skill is None or match.skill == skill
    for match in shipped.match_skills(weak):
        assert match.status == "weak", match.describe()
        assert match.skill in ("punch", "kick") and match.clips < shipped.vocabulary.rare_clips
    assert set(shipped.vocabulary.weak_skills()) >= {"kick", "punch", "slash", "call", "respond", "dance-short"}


def test_the_check_costs_well_under_5_ms_on_top_of_the_encoding_generation_does(shipped):
    """The generator encodes the text anyway (and caches it): the check adds the prototype product."""
    text = "walk forward and wave"
    shipped.match_skills([text])  # encoded once, as the generator would
    tick = time.perf_counter()
    for _ in range(20):
        shipped.match_skills([text])
    per_check_ms = (time.perf_counter() - tick) / 20 * 1e3
    assert per_check_ms < 5.0, per_check_ms


# ---- the commands ----------------------------------------------------------------------------


def test_vocab_check_and_list_print_the_verdict_and_the_clip_counts(shipped, capsys):
    assert main(["vocab", "check", "do a backflip", "--json"]) == 1  # unknown: exit code 1
    unknown = json.loads(capsys.readouterr().out)
    assert unknown["known"] is False and unknown["status"] == "unknown" and len(unknown["nearest"]) == 3
    assert main(["vocab", "check", "walk forward, then wave for three seconds"]) == 0
    out = capsys.readouterr().out
    assert "known: true" in out and "skill: walk -> " in out and "confidence: " in out and "nearest: " in out
    assert "part 'wave', 3 s" in out
    assert main(["vocab", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    clips = {row["skill"]: row["clips"] for row in listing["skills"]}
    assert clips["walk"] > 100 and clips["kick"] == 1
    assert {row["skill"] for row in listing["skills"] if row["weak"]} >= {"kick", "punch"}
    assert sum(listing["styles"].values()) == sum(clips.values())
    assert main(["generate", "kick something in front of you", "--seconds", "1", "--seed", "0", "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)  # moscale generate prints the same verdict
    assert (generated["known"], generated["status"], generated["skill"]) == (True, "weak", "kick")
    assert generated["nearest"][0] == "kick" and 0 < generated["confidence"] <= 1


def test_eval_vocab_reports_auroc_error_rates_and_per_skill_accuracy(shipped, capsys):
    archive = archive_or_skip()
    if not (default_cache_dir() / "meta.json").is_file():  # the real data, as `moscale data prepare` writes it
        prepare(archive, default_cache_dir(), progress=False, log=lambda _line: None)
    assert main(["eval", "vocab", "--json", "--seeds", "1", "--phrasings-per-skill", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    confidence = report["confidence"]
    assert 0.5 < confidence["auroc"] <= 1.0 and confidence["unknown_commands"] >= 40
    assert 0 <= confidence["false_accept_rate"] <= 1 and 0 <= confidence["false_reject_rate"] <= 1
    assert set(confidence["cross_validated"]) == {"false_accept_rate", "false_reject_rate"}
    per_skill = report["content"]["per_skill"]
    assert {"kick", "punch", "walk"} <= set(per_skill) and per_skill["kick"]["weak"] is True
    assert per_skill["walk"]["seconds"] == pytest.approx(shipped.vocabulary.typical_seconds["walk"], abs=0.01)
    assert 0 <= report["content_judge"]["accuracy_on_real_test_clips"]["all"] <= 1
