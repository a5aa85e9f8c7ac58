"""scripts/fuzz_soak.py end to end with a small count: the real node process, 150 fuzzed commands on
the topic and the action as fast as the client goes, with the rate limit off so every command
reaches validation and the worker. The script's own pass criteria must hold, and its figures must
add up. The round-two phases (distinct texts for memory, a fast stream, hostile settings at start-up
and live, signals) run small too. (The full runs are by hand: see docs/SECURITY.md.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = 150


def test_small_fuzz_soak_passes_and_its_figures_add_up(untrained_generator, tmp_path):
    argv = [
        sys.executable, str(ROOT / "scripts" / "fuzz_soak.py"), "--phases", "fuzz", "--commands", str(COMMANDS),
        "--rate", "400",
        "--max-command-rate", "0", "--checkpoint", untrained_generator, "--seed", "3",
        "--node-log", str(tmp_path / "node.log"), "--json",
    ]  # fmt: skip
    env = {**os.environ, "ROS_DOMAIN_ID": str((int(os.environ.get("ROS_DOMAIN_ID", "0")) + 17) % 200 + 10)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["passed"], (report["failures"], (tmp_path / "node.log").read_text()[-3000:])

    assert report["commands_sent"] == COMMANDS == sum(report["sent_by_channel_and_kind"].values())
    channels = {key.split("/")[0] for key in report["sent_by_channel_and_kind"]}
    kinds = {key.split("/")[1] for key in report["sent_by_channel_and_kind"]}
    assert channels == {"topic", "action"}
    assert kinds == {"empty", "whitespace", "huge", "unicode", "control", "ordinary"}
    goals = report["goals_sent"]
    assert goals == sum(v for k, v in report["sent_by_channel_and_kind"].items() if k.startswith("action/"))
    assert sum(report["goals_by_status"].values()) == goals
    assert set(report["goals_by_status"]) <= {"succeeded", "aborted", "canceled", "rejected"}
    assert report["goals_ended_without_message"] == 0
    counters = report["node_counters"]
    assert counters["goals_received"] == goals and counters["goals_active"] == 0
    assert counters["refused_invalid"] > 0 and "refused_rate_limited" not in counters
    assert 0 < counters["commands_topic"] <= COMMANDS - goals  # DDS keeps the last 10 of a burst
    assert report["peak_worker_pending"] <= 1 and report["final_goal_handles_kept"] == 0
    rss = report["node_rss_mb"]
    assert rss["start"] > 50 and rss["start"] <= rss["peak"] and rss["end"] <= rss["peak"]
    assert report["node_rss_growth_mb"]["peak"] < 100
    assert report["crashes"] == 0 and report["node_exit_code"] == 0 and report["tracebacks_in_node_log"] == 0
    assert report["check_goal_after_soak"]["status"] == "succeeded"


def test_the_round_two_phases_run_and_report_their_figures(untrained_generator, tmp_path):
    argv = [
        sys.executable, str(ROOT / "scripts" / "fuzz_soak.py"), "--phases", "memory,stream,settings,signals",
        "--memory-texts", "60", "--memory-rate", "20", "--stream-seconds", "6", "--checkpoint", untrained_generator,
        "--node-log", str(tmp_path / "node.log"), "--json",
    ]  # fmt: skip
    env = {**os.environ, "ROS_DOMAIN_ID": str((int(os.environ.get("ROS_DOMAIN_ID", "0")) + 29) % 200 + 10)}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    memory, stream, settings, signals = (report[p] for p in ("memory", "stream", "settings", "signals"))

    # the vocabulary check encodes a multi-part command ("... then ...", "twice") part by part: at
    # most one encoding per distinct part of the 60 texts (the soak's own texts, seed 0)
    assert memory["texts_sent"] == 60 and 0 < memory["texts_encoded"] <= _distinct_parts(60, seed=0 + 11)
    assert memory["text_cache_entries"] == memory["texts_encoded"]  # 60 small texts fit the 16 MB budget
    curve = memory["rss_mb_by_texts"]
    assert curve[0][0] == 0 and curve[-1][0] == 60 and len(curve) == 11
    assert memory["rss_growth_mb"] == pytest.approx(curve[-1][1] - curve[0][1], abs=0.11)
    assert memory["rss_growth_mb"] < 100
    children = memory["child_rss_mb_by_texts"]  # the IK process (retarget_process: true), counted too
    assert len(children) == len(curve) and all(mb > 20 for _, mb in children)
    assert memory["node_and_child_rss_growth_mb"] == pytest.approx(
        curve[-1][1] + children[-1][1] - curve[0][1] - children[0][1], abs=0.11
    )
    assert memory["node_exit_code"] == 0 and memory["tracebacks_in_node_log"] == 0

    assert stream["commands_sent"] == 84 and stream["final_plans_published"] > 0
    assert stream["plans_per_command"] == round(stream["plans_published"] / 84, 3)
    assert stream["node_exit_code"] == 0

    assert not settings["failures"], settings["failures"]
    assert len(settings["at_start_up"]) == 20 and not any(r["accepted"] for r in settings["live"].values())
    assert not signals["failures"], signals["failures"]
    assert signals["sigterm_1s_into_start_up"]["seconds_to_exit"] < 2.0


def _distinct_parts(count: int, seed: int) -> int:
    """Distinct command parts of the memory phase's first ``count`` texts (scripts/fuzz_soak.py's
    ``distinct_text`` with its ``random.Random(seed)``); texts the parser refuses have none."""
    import importlib.util
    import random

    from moscale_common.errors import InputError
    from moscale_ros.generation.command_text import parse_command

    spec = importlib.util.spec_from_file_location("fuzz_soak", ROOT / "scripts" / "fuzz_soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    rng, parts = random.Random(seed), set()
    for index in range(count):
        try:
            parts.update(part.text for part in parse_command(soak.distinct_text(index, rng)))
        except InputError:
            pass
    return len(parts)
