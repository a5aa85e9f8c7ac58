"""``moscale eval compare`` and ``moscale eval generator`` end to end on real clips, with tiny models
trained for a couple of steps (the contracts, not the quality: stages, resume, tables, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moscale_common.errors import CheckpointError
from moscale_ros.cli import main

TINY = [
    "tokenizer_overrides=[model.width=32, model.depth=1, model.code_dim=16, model.codebook_size=64, "
    "data.min_window=32, data.max_window=48, data.val_max_clips=4, train.batch_size=8, train.steps=2, "
    "train.warmup_steps=1, train.log_every=1, train.val_every=2, train.checkpoint_every=2]",
    "evaluator_overrides=[model.width=32, model.depth=1, model.embed_dim=16, model.text_hidden=32, "
    "train.batch_size=8, train.steps=2, train.warmup_steps=1, train.log_every=1, train.val_every=2, "
    "train.checkpoint_every=2]",
    "transformer_overrides=[model.width=32, model.depth=1, model.num_position_freqs=8, length.hidden=32, "
    "data.max_frames=120, data.val_max_clips=4, train.batch_size=4, train.steps=2, train.warmup_steps=1, "
    "train.log_every=1, train.val_every=2, train.checkpoint_every=2, text_encoder.cache_size=256, "
    "train.num_threads=2]",
    "protocol.runs=2",
    "protocol.max_frames=120",
    "protocol.mm_texts=3",
    "protocol.mm_samples=2",
    "protocol.mm_pairs=2",
    "protocol.diversity_pairs=20",
    "protocol.latency_frames=40",
    "protocol.latency_repeats=1",
]


def _compare_argv(out: Path, results_md: Path, data_dir: Path, overrides: list[str]) -> list[str]:
    argv = ["eval", "compare", "--out", str(out), "--results", str(results_md), "--device", "cpu"]
    for item in [f"data_dir={data_dir}", *overrides]:
        argv += ["--set", item]
    return argv


@pytest.fixture(scope="module")
def compared(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("compare")
    results_md = out / "RESULTS.md"
    assert main(_compare_argv(out, results_md, prepared_small, TINY)) == 0
    return out, results_md, json.loads((out / "results.json").read_text())


def test_compare_trains_every_stage_and_writes_the_tables(compared):
    out, results_md, results = compared
    for stage in (
        "evaluator",
        "tokenizer-multiscale",
        "tokenizer-single",
        "next-scale-refined",
        "next-scale-plain",
        "next-token",
    ):
        assert (out / stage / "last.safetensors").is_file(), stage
    setup = {s["name"]: s for s in results["setup"]}
    assert setup["next-token"]["tokenizer_scales"] == [49] and setup["next-token"]["tokens_at_196"] == 49
    assert setup["next-scale-refined"]["tokens_at_196"] == 6 + 12 + 24 + 49
    assert setup["next-scale-refined"]["inference"] == "passes per scale [1, 1, 2, 2]"
    assert setup["next-scale-plain"]["inference"] == "passes per scale [1, 1, 1, 1]"
    # Same transformer size in every arm (the next-token model reuses the next-scale parameters).
    assert len({s["transformer_params"] for s in results["setup"]}) == 1
    assert all(s["train_steps"] == 2 for s in results["setup"])

    rows = results["rows"]
    for text_set in ("train", "heldout"):
        names = [r["name"] for r in rows if r["text_set"] == text_set]
        assert names == [
            "real motion (reference)",
            "(a) next-scale, both refinements",
            "(b) next-scale, no refinements",
            "(c) next-token (T2M-GPT order)",
        ]
    for reference in (r["metrics"] for r in rows if r["name"] == "real motion (reference)"):
        assert "multimodality" not in reference and reference["r1"]["runs"] == 2
        assert 0.0 <= reference["r1"]["mean"] <= reference["r2"]["mean"] <= reference["r3"]["mean"] <= 1.0
        assert reference["fid"]["mean"] > 0.0  # matched real windows of other clips vs the test windows
    for row in (r for r in rows if r["name"] != "real motion (reference)"):
        m = row["metrics"]
        assert set(m) == {"r1", "r2", "r3", "r1_label", "fid", "mm_dist", "diversity"} | {
            "multimodality",
            "content_acc",
            "style_acc",
        }
        assert m["fid"]["mean"] >= 0.0 and m["diversity"]["mean"] > 0.0
        assert row["timing"]["generation_ms_per_motion"] > 0.0
        assert row["timing"]["latency_first_plan_s"] <= row["timing"]["latency_final_s"]
    next_token_row = next(r for r in rows if r["name"].startswith("(c)"))
    assert next_token_row["timing"]["latency_first_plan_s"] == next_token_row["timing"]["latency_final_s"]

    text = results_md.read_text()
    assert "| real motion (reference) |" in text and "| (c) next-token (T2M-GPT order) |" in text
    assert text.count("| real motion (reference) |") == 2  # training templates and held-out paraphrases
    assert "moscale eval compare" in text and "Wall time of the command" in text
    # the command as typed (the CLI's argv), not the parsed namespace written back ("--argv", "--func")
    assert f"`moscale eval compare --out {out} --results {results_md} --device cpu --set " in text
    assert "--argv" not in text and "--func" not in text


def test_compare_resumes_finished_stages_without_retraining(compared, prepared_small):
    out, results_md, first = compared
    overrides = [*TINY, "protocol.runs=1", "protocol.text_sets=[train]", "protocol.mm_texts=0"]
    argv = _compare_argv(out, results_md, prepared_small, overrides)
    assert main([*argv, "--evaluator", str(out / "evaluator" / "evaluator.safetensors")]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [s["train_steps"] for s in again["setup"]] == [s["train_steps"] for s in first["setup"]]
    assert again["evaluator"] == {"path": str(out / "evaluator" / "evaluator.safetensors")}
    assert [r["metrics"]["r1"]["runs"] for r in again["rows"]] == [1, 1, 1, 1]
    assert "multimodality" not in again["rows"][1]["metrics"]
    assert "evaluator: given" in results_md.read_text()


def _generator_argv(out: Path, data: Path, *extra: str) -> list[str]:
    argv = ["eval", "generator", "--evaluator", str(out / "evaluator" / "evaluator.safetensors")]
    argv += ["--data", str(data), "--runs", "2", "--set", "max_frames=120", "--set", "mm_texts=2"]
    argv += ["--set", "mm_samples=2", "--set", "latency_frames=32", "--set", "latency_repeats=1"]
    return argv + ["--set", "text_sets=[heldout]", *extra]


def test_eval_generator_both_orders_side_by_side(compared, prepared_small, capsys, tmp_path):
    out, _, _ = compared
    capsys.readouterr()
    next_scale, next_token = out / "next-scale-refined" / "model.safetensors", out / "next-token" / "model.safetensors"
    report_md = tmp_path / "report.md"
    argv = _generator_argv(out, prepared_small, "--checkpoint", str(next_scale), "--checkpoint", str(next_token))
    assert main([*argv, "--json", "--report", str(report_md)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["order"] for c in report["info"]["candidates"]] == ["next-scale", "next-token"]
    names = [r["name"] for r in report["rows"]]
    assert names == ["real motion (reference)", "next-scale-refined", "next-token (next-token)"]
    assert report["rows"][1]["metrics"]["r1"]["runs"] == 2
    # Label-level retrieval beside clip-level (same groups): the label is easier to hit than the clip.
    for row in report["rows"]:
        assert row["metrics"]["r1_label"]["mean"] >= row["metrics"]["r1"]["mean"]
    # Per-content accuracy of every row, over the same contents; contents with no test clip named.
    reference, generated, _ = report["rows"]
    assert set(reference["per_content"]) == set(generated["per_content"]) and reference["per_content"]
    assert sum(c["clips"] for c in reference["per_content"].values()) == report["info"]["clips"]
    assert all(0.0 <= c["accuracy"] <= 1.0 for c in generated["per_content"].values())
    assert not set(report["info"]["untestable_contents"]) & set(reference["per_content"])
    robust = report["info"]["length_robustness"]
    assert robust["share"] == 0.5 and 0.0 <= robust["content_acc_cropped"] <= 1.0
    assert sum(report["info"]["fid_reference_windows"].values()) == report["info"]["clips"]
    # Next-token order has no plan before its last token; each generated row has its own latency.
    token_timing = report["rows"][2]["timing"]
    assert token_timing["latency_first_plan_s"] == token_timing["latency_final_s"] > 0
    # The report: its provenance, and the second generator against the first with its latency ratio.
    text = report_md.read_text()
    assert "Written by `moscale eval generator " in text and report["info"]["commit"] in text
    ratio = token_timing["latency_final_s"] / report["rows"][1]["timing"]["latency_final_s"]
    assert "| Against next-scale-refined |" in text
    assert "| next-token (next-token) | " in text and f" | {ratio:.2f} |" in text


def test_eval_generator_sweeps_generation_settings(compared, prepared_small, capsys, tmp_path):
    out, _, _ = compared
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("grid:\n  refine_iterations: [[1, 1, 1, 1], [1, 2, 2, 3]]\nfixed:\n  guidance: 2.5\n")
    checkpoint = str(out / "next-scale-refined" / "model.safetensors")
    capsys.readouterr()
    argv = _generator_argv(out, prepared_small, "--checkpoint", checkpoint, "--sweep", str(sweep))
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    candidates = report["info"]["candidates"]
    assert [c["name"] for c in candidates] == [
        "next-scale-refined, passes 1,1,1,1",
        "next-scale-refined, passes 1,2,2,3",
    ]
    assert [c["overrides"] for c in candidates] == [
        {"refine_iterations": [1, 1, 1, 1], "guidance": 2.5},
        {"refine_iterations": [1, 2, 2, 3], "guidance": 2.5},
    ]
    assert [r["name"] for r in report["rows"][1:]] == [c["name"] for c in candidates]
    # a setting generation does not have, or a bad value, is refused with its name
    sweep.write_text("grid:\n  refine_iterations: [[1, 1, 1, 1]]\n  beam_width: [2]\n")
    assert main(argv) == 2
    assert "unknown generation setting(s) ['beam_width']" in capsys.readouterr().err
    sweep.write_text("grid:\n  guidance: [fast]\n")
    assert main(argv) == 2
    assert "sweep variant (guidance fast)" in capsys.readouterr().err


def test_eval_generator_errors_name_the_file(compared, prepared_small, capsys):
    out, _, _ = compared
    evaluator = str(out / "evaluator" / "evaluator.safetensors")
    tokenizer = str(out / "tokenizer-single" / "tokenizer.safetensors")
    assert (
        main(["eval", "generator", "--checkpoint", tokenizer, "--evaluator", evaluator, "--data", str(prepared_small)])
        == 2
    )
    assert "tokenizer.safetensors" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "generator",
                "--checkpoint",
                str(out / "next-token" / "model.safetensors"),
                "--evaluator",
                tokenizer,
                "--data",
                str(prepared_small),
            ]
        )
        == 2
    )
    assert "expected a 'evaluator' checkpoint" in capsys.readouterr().err
    # The next-scale generator refuses a next-token file instead of misreading it.
    from moscale_ros.generation.generator import MotionGenerator

    with pytest.raises(CheckpointError, match="next-token-generator"):
        MotionGenerator.from_checkpoint(out / "next-token" / "model.safetensors", warm_up=False)
