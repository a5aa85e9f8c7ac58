"""``moscale bench sim``: speed of the physics simulation of the G1 (floating base, foot contacts).

* ``loop_real_time_factor``: simulated seconds per wall second of the control loop alone
  (:class:`~moscale_ros.sim.loop.ControlLoop`: controller rules at 500 Hz, MuJoCo at 2 ms, the
  physics monitor), holding the standing pose for 10 s;
* ``node_real_time_factor``: the same ratio for ``moscale_sim_node`` as a process, publishing
  ``/clock``, ``/joint_states``, ``/odom`` at 100 Hz and ``/diagnostics``, paced at real time
  (target 1.0: it must reach it), from the line it prints at exit;
* ``node_unpaced_real_time_factor``: the node running as fast as it can (its headroom).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time

from moscale_common.errors import MoScaleError

NODE_SECONDS = 8.0


def _node_rtf(target: float) -> float:
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(100, 200)), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    argv = [sys.executable, "-m", "moscale_ros.node.sim_node", "--ros-args", "-p", f"real_time_factor:={target}"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(NODE_SECONDS)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    found = re.search(r"real-time factor ([0-9.]+)", out)
    if found is None:
        raise MoScaleError(f"sim bench: moscale_sim_node printed no real-time factor:\n{out[-1500:]}")
    return float(found.group(1))


def run(args: argparse.Namespace) -> dict:
    # Imported on use: MuJoCo and Pinocchio cost start-up time of `moscale bench --help`
    from moscale_ros.sim.loop import ControlLoop
    from moscale_ros.sim.model import build_model
    from retarget.robot import load_robot

    robot = load_robot("g1")
    sim = build_model(robot)
    loop = ControlLoop(sim, robot.q_initial[7:], robot.q_initial[:7])
    tick = time.perf_counter()
    while loop.time < 10.0:
        loop.cycle()
    loop_rtf = loop.time / (time.perf_counter() - tick)
    paced = _node_rtf(1.0)
    return {
        "robot": "g1, floating base, foot contacts, self-collision on",
        "timestep_s": sim.model.opt.timestep,
        "controller_rate_hz": sim.config.controller_rate,
        "loop_real_time_factor": round(loop_rtf, 2),
        "node_real_time_factor": round(paced, 3),
        "node_unpaced_real_time_factor": round(_node_rtf(0.0), 2),
        "node_meets_real_time": paced >= 0.99,
    }
