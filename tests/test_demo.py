"""`moscale demo` (the README's first command) end to end: a node process, a client, the outputs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
from PIL import Image

from moscale_common.skeleton import CANONICAL_JOINTS


def test_demo_prints_every_plan_and_writes_trajectory_and_animation(untrained_generator, tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(100, 200))}  # its own node: its own domain
    result = subprocess.run(
        [sys.executable, "-m", "moscale_ros.cli", "demo", "wave the right hand", "--duration", "3",
         "--checkpoint", untrained_generator, "--out", str(out), "--seed", "3"],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    plan_lines = [line for line in result.stdout.splitlines() if line.strip().startswith("plan ")]
    assert [line.split()[1].rstrip(":") for line in plan_lines] == ["1/4", "2/4", "3/4", "4/4"], result.stdout
    assert "final" in plan_lines[-1]
    summary = json.loads((out / "demo.json").read_text())
    assert (
        summary["num_plans"] == 4
        and summary["latencies_ms"]["final_plan_ms"] >= summary["latencies_ms"]["first_plan_ms"]
    )
    saved = np.load(out / "trajectory.npz")
    times = saved["times"]
    assert saved["positions"].shape == (len(times), len(saved["joint_names"]))
    assert np.all(np.diff(times) > 0) and np.isfinite(saved["positions"]).all()
    assert saved["human_joints"].shape[1:] == (len(CANONICAL_JOINTS), 3)
    gif = Image.open(out / "demo.gif")
    assert gif.n_frames > 10
    assert gif.size[1] > gif.size[0] / 2  # two rows: the coarse plan and the final one
