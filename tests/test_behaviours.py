"""``moscale eval behaviours``: the measures on hand-built skeletons (so each can be seen to fail),
and the shipped model's behaviours with the thresholds of config/eval/behaviours.yaml."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from moscale_common.skeleton import JOINT_INDEX
from moscale_ros.evaluation.behaviours import BehaviourCommand, Check, load_protocol, measure, summarise, wave_cycles

# A standing person in the canonical frame (y up, facing +z, left +x), metres.
STANDING_J3 = {
    "pelvis": (0.0, 0.95, 0.0), "left_hip": (0.09, 0.9, 0.0), "right_hip": (-0.09, 0.9, 0.0),
    "spine1": (0.0, 1.05, 0.0), "left_knee": (0.09, 0.5, 0.0), "right_knee": (-0.09, 0.5, 0.0),
    "spine2": (0.0, 1.18, 0.0), "left_ankle": (0.09, 0.08, 0.0), "right_ankle": (-0.09, 0.08, 0.0),
    "spine3": (0.0, 1.3, 0.0), "left_foot": (0.09, 0.02, 0.1), "right_foot": (-0.09, 0.02, 0.1),
    "neck": (0.0, 1.5, 0.0), "left_collar": (0.07, 1.45, 0.0), "right_collar": (-0.07, 1.45, 0.0),
    "head": (0.0, 1.62, 0.0), "left_shoulder": (0.18, 1.42, 0.0), "right_shoulder": (-0.18, 1.42, 0.0),
    "left_elbow": (0.2, 1.15, 0.0), "right_elbow": (-0.2, 1.15, 0.0), "left_wrist": (0.2, 0.9, 0.0),
    "right_wrist": (-0.2, 0.9, 0.0),
}  # fmt: skip


def standing(frames: int = 60) -> np.ndarray:
    joints_J3 = np.zeros((22, 3))
    for name, xyz in STANDING_J3.items():
        joints_J3[JOINT_INDEX[name]] = xyz
    return np.repeat(joints_J3[None], frames, axis=0)


def yaw(joints_T223: np.ndarray, angles_T: np.ndarray) -> np.ndarray:
    """Turn each frame about the vertical through the pelvis by ``angles_T`` (rad, positive to the left)."""
    c, s = np.cos(angles_T), np.sin(angles_T)
    rot_T33 = np.zeros((len(angles_T), 3, 3))
    rot_T33[:, 0, 0], rot_T33[:, 0, 2], rot_T33[:, 1, 1], rot_T33[:, 2, 0], rot_T33[:, 2, 2] = c, s, 1, -s, c
    pelvis_T13 = joints_T223[:, :1] * np.array([1.0, 0.0, 1.0])
    return np.einsum("tij,tkj->tki", rot_T33, joints_T223 - pelvis_T13) + pelvis_T13


def test_standing_still_is_in_place_with_nothing_raised():
    m = measure(standing())
    assert m["direction"] == "in place" and m["travel_m"] == pytest.approx(0.0)
    assert m["raised_hands"] == "none" and m["turn_deg"] == pytest.approx(0.0)
    assert m["torso_pitch_deg"] == pytest.approx(0.0, abs=1e-9) and m["foot_lift_m"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("shift", "direction", "forward", "leftward"),
    [((0, 0, 3.0), "forward", 3.0, 0.0), ((0, 0, -2.0), "backward", -2.0, 0.0), ((1.5, 0, 0.2), "left", 0.2, 1.5)],
)
def test_travel_is_split_along_the_first_facing(shift, direction, forward, leftward):
    joints = standing() + np.linspace(0.0, 1.0, 60)[:, None, None] * np.array(shift)
    m = measure(joints)
    assert m["direction"] == direction
    assert m["forward_m"] == pytest.approx(forward) and m["leftward_m"] == pytest.approx(leftward)
    # The same walk by a person who first faces +x (turned left by 90 degrees): still "forward" etc.
    turned = yaw(standing(), np.full(60, np.pi / 2)) + np.linspace(0.0, 1.0, 60)[:, None, None] * np.array(
        [shift[2], 0.0, -shift[0]]
    )
    assert measure(turned)["direction"] == direction


def test_turn_is_signed_and_unwrapped():
    assert measure(yaw(standing(), np.linspace(0, np.radians(90), 60)))["turn_deg"] == pytest.approx(90.0)
    assert measure(yaw(standing(), np.linspace(0, np.radians(-400), 60)))["turn_deg"] == pytest.approx(-400.0)


def test_a_raised_waving_right_hand():
    joints = standing()
    wrist = JOINT_INDEX["right_wrist"]
    joints[10:50, wrist] = (-0.25, 1.8, 0.1)
    joints[10:50, wrist, 0] += 0.12 * np.sin(np.linspace(0, 6 * np.pi, 40))  # three side-to-side cycles
    m = measure(joints)
    assert m["raised_hands"] == "right" and m["right_raised_fraction"] == pytest.approx(40 / 60)
    assert m["right_wrist_above_head_m"] == pytest.approx(1.8 - 1.62)
    assert m["right_wave_cycles"] == pytest.approx(2.5, abs=0.5) and m["left_wave_cycles"] == 0.0


def test_bow_pitch_and_kick_lift():
    joints = standing()
    upper = [JOINT_INDEX[n] for n in ("neck", "head")]
    pelvis = joints[:, JOINT_INDEX["pelvis"]]
    lean_T = np.radians(np.concatenate([np.linspace(0, 60, 30), np.linspace(60, 0, 30)]))
    for j in upper:
        length = np.linalg.norm(joints[0, j] - pelvis[0])
        joints[:, j] = pelvis + length * np.stack([0 * lean_T, np.cos(lean_T), np.sin(lean_T)], axis=-1)
    joints[20:30, JOINT_INDEX["left_foot"], 1] = 0.62
    m = measure(joints)
    assert m["torso_pitch_deg"] == pytest.approx(60.0)
    assert m["lifted_foot"] == "left" and m["foot_lift_m"] == pytest.approx(0.6)
    leaning_back = standing()
    leaning_back[:, JOINT_INDEX["neck"], 2] = -0.3
    assert measure(leaning_back)["torso_pitch_deg"] < 0


def test_wave_cycles_needs_the_swing():
    t = np.linspace(0, 4 * np.pi, 200)
    assert wave_cycles(0.1 * np.sin(t)) == 2.0
    assert wave_cycles(0.01 * np.sin(t)) == 0.0
    assert wave_cycles(np.linspace(0, 1, 50)) == 0.0


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(T >= 2, 22, 3\)"):
        measure(np.zeros((10, 21, 3)))


SHIPPED_COMMANDS = ("walk forward", "a person walks backward", "wave the right hand")


def test_shipped_model_behaves_as_the_protocol_expects(tmp_path):
    """The shipped model, through the CLI: *walk forward* travels forward (>= 2 m in 6 s), *a person
    walks backward* travels backward (<= -1 m), *wave the right hand* keeps the right wrist above the
    shoulder for at least half of the motion and swings it at least once; seeds 0 and 1."""
    protocol = load_protocol("config/eval/behaviours.yaml")
    expected = {c.text: c for c in protocol.commands}
    assert all(expected[text].expect for text in SHIPPED_COMMANDS)
    out = subprocess.run(
        [sys.executable, "-m", "moscale_ros.cli", "eval", "behaviours", "--json", "--seeds", "2",
         "--commands", *SHIPPED_COMMANDS],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    rows = {r["command"]: r for r in result["rows"]}
    assert set(rows) == set(SHIPPED_COMMANDS)
    for text in SHIPPED_COMMANDS:
        assert [c["passed"] for c in rows[text]["checks"]] == [2] * len(expected[text].expect), rows[text]
    assert rows["walk forward"]["direction"] == "forward"
    assert rows["a person walks backward"]["direction"] == "backward"
    assert rows["wave the right hand"]["raised_hands"] == "right"
    for run in result["runs"]["wave the right hand"]:
        assert run["right_wrist_above_head_m"] > 0.0  # above the head at its highest, not only the shoulder


def test_unknown_measure_in_a_check_is_named():
    command = BehaviourCommand("bow", [Check("bow_angle", at_least=30.0)])
    with pytest.raises(KeyError, match="bow_angle"):
        summarise(command, [measure(standing())])
