"""scripts/fuzz_soak.py end to end with a small count: the real node process, 150 fuzzed commands on
the topic and the action as fast as the client goes, with the rate limit off so every command
reaches validation and the worker. The script's own pass criteria must hold, and its figures must
add up. (The full 5,000-command soak is run by hand: see docs/SECURITY.md.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = 150


def test_small_fuzz_soak_passes_and_its_figures_add_up(untrained_generator, tmp_path):
    argv = [
        sys.executable, str(ROOT / "scripts" / "fuzz_soak.py"), "--commands", str(COMMANDS), "--rate", "400",
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
