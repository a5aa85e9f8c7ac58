"""Balance, self-collision and joint limits held inside the retargeting QP, on real clips and the G1.

Clips come from the shared Bandai-Namco archive; these tests skip only when that archive is absent.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import pytest
from scipy.spatial.transform import Rotation

from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from retarget import RetargetConfig, Retargeter, load_robot
from retarget.balance import BalanceConfig, BalanceConstraint, inradius, support_halfplanes
from retarget.collision import PUSH_OUT, CollisionConfig, SelfCollision, segment_distances
from retarget.human import JOINT

UPPER_BODY = ("spine1", "spine2", "spine3", "neck", "head", "left_collar", "right_collar", "left_shoulder",
              "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")  # fmt: skip


@pytest.fixture(scope="module")
def wave() -> tuple[np.ndarray, float]:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    return real_clips(("wave",))["wave"]


@pytest.fixture(scope="module")
def g1():
    return load_robot("g1")


def _lean_forward(joints_T223: np.ndarray, degrees: float) -> np.ndarray:
    """The upper body rotated forward about the pelvis (y-up canonical joints), ramped in over 1 s."""
    out = joints_T223.copy()
    pelvis_T3 = out[:, JOINT["pelvis"]]
    hips = out[0, JOINT["left_hip"]] - out[0, JOINT["right_hip"]]
    lateral = np.array([hips[0], 0.0, hips[2]]) / np.linalg.norm([hips[0], hips[2]])
    ramp_T = np.clip(np.arange(len(out)) / 20.0, 0.0, 1.0)
    for t in range(len(out)):
        R = Rotation.from_rotvec(np.radians(degrees) * ramp_T[t] * lateral).as_matrix()
        for name in UPPER_BODY:
            out[t, JOINT[name]] = pelvis_T3[t] + (out[t, JOINT[name]] - pelvis_T3[t]) @ R.T
    return out


def _com_margins(trajectory, robot, with_depth: bool = False):
    """Signed distance (m) of the CoM inside the support polygon of both soles, per point; with
    ``with_depth``, also the polygon's inradius (the largest distance any point could have)."""
    data = robot.model.createData()
    margins, depths = [], []
    for q in trajectory.configurations():
        com = pin.centerOfMass(robot.model, data, q)
        pin.updateFramePlacements(robot.model, data)
        corners = [robot.sole_corners[s] @ data.oMf[robot.foot_frame_ids[s]].rotation.T
                   + data.oMf[robot.foot_frame_ids[s]].translation for s in ("left", "right")]  # fmt: skip
        normals, offsets = support_halfplanes(np.concatenate(corners)[:, :2], 0.0)
        margins.append(float((offsets - normals @ com[:2]).min()))
        depths.append(inradius(normals, offsets) if with_depth else np.nan)
    return (np.asarray(margins), np.asarray(depths)) if with_depth else np.asarray(margins)


def test_leaning_standing_motion_keeps_the_com_inside_the_support(wave, g1) -> None:
    joints, fps = wave
    leaning = _lean_forward(joints, 60.0)
    free = Retargeter(g1, RetargetConfig(balance=BalanceConfig(enabled=False))).retarget(leaning, fps)
    margin = 0.02
    held = Retargeter(g1, RetargetConfig(balance=BalanceConfig(support_margin=margin))).retarget(leaning, fps)
    assert _com_margins(free, g1).min() < 0.0  # without the constraint the CoM leaves the feet
    assert held.report.standing
    margins = _com_margins(held, g1)
    assert margins.min() > margin - 0.005, held.report.format()  # inside, by the margin (5 mm of linearisation)
    assert held.report.foot_slide_max_cm < 0.5 and held.report.com_over_support_fraction == 1.0
    assert max(held.report.tracking_median_cm[h] for h in ("left_hand", "right_hand")) < 3.0, held.report.format()


def test_inradius_of_support_polygons() -> None:
    """The deepest point's margin: a 20 x 10 cm rectangle is 5 cm deep, shrunk by 6 cm it is empty
    (-1 cm); a 3-4-5 right triangle's inscribed circle has radius 1."""
    rectangle_P2 = np.array([[0.0, 0.0], [0.2, 0.0], [0.2, 0.1], [0.0, 0.1]])
    assert inradius(*support_halfplanes(rectangle_P2, 0.0)) == pytest.approx(0.05, abs=1e-9)
    assert inradius(*support_halfplanes(rectangle_P2, 0.06)) == pytest.approx(-0.01, abs=1e-9)
    triangle_P2 = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    assert inradius(*support_halfplanes(triangle_P2, 0.0)) == pytest.approx(1.0, abs=1e-9)


def test_balance_violations_are_judged_against_the_best_margin_the_support_allows() -> None:
    """Outside a non-empty shrunk polygon by more than 5 mm counts; where the polygon is empty, only
    falling more than 1 cm short of its best margin counts (never reaching 0 is no fault)."""
    balance = BalanceConstraint.__new__(BalanceConstraint)  # only the recorded margins matter here
    balance.margin_K = np.array([0.01, -0.004, -0.006, -0.020, -0.027, -0.029, np.nan])
    balance.best_margin_K = np.array([0.03, 0.03, 0.03, -0.018, -0.018, -0.018, np.nan])
    assert balance.violations == 2  # -0.006 against 0, -0.029 against -0.018
    assert balance.best_margin_m == pytest.approx(-0.018)
    assert balance.shortfall_max_m == pytest.approx(0.011)


def test_on_the_g1_the_default_margin_leaves_no_region_and_the_com_is_held_at_its_deepest(wave, g1) -> None:
    """G1's soles side by side: 17 cm long, so the polygon is about 8.5 cm deep front to back, less than
    the default margin (7 cm) plus the ZMP allowance. The report says the region is empty, and the
    CoM, measured independently, is held within 1 cm of the deepest margin possible (the soft rows
    settle a few mm from it, retarget/balance.py)."""
    joints, fps = wave
    result = Retargeter(g1).retarget(joints, fps)
    report = result.report
    assert report.standing and report.balance_best_margin_cm < 0, report.format()
    assert report.balance_keyframes_outside == 0 and not any("balance" in w for w in report.warnings), report.format()
    assert "is empty" in report.format()
    margins_N, depths_N = _com_margins(result, g1, with_depth=True)  # in the soles' own polygon, every point
    assert (margins_N > depths_N - 0.01).all(), (depths_N - margins_N).max()
    assert 0 < report.balance_shortfall_max_cm < 1.0 and "at most" in report.format()
    config = BalanceConfig()
    zmp_allowance_m = config.com_acceleration_limit * 0.6 / 9.81  # z_c a_max / g, the CoM at least 0.6 m high
    assert depths_N.max() < config.support_margin + zmp_allowance_m  # empty: not as deep as the two insets


def test_hand_through_the_torso_is_kept_out_and_the_pair_is_named(wave, g1) -> None:
    joints, fps = wave
    through = joints.copy()
    chest_T3 = joints[:, JOINT["spine3"]]
    left_side_T3 = joints[:, JOINT["left_shoulder"]] - chest_T3
    sweep_T = np.clip(np.arange(len(joints)) / 40.0, 0.0, 1.0)[:, None]
    inside_T3 = chest_T3 + 0.3 * left_side_T3  # inside the chest, left of its centre
    through[:, JOINT["right_wrist"]] = (1 - sweep_T) * joints[:, JOINT["right_wrist"]] + sweep_T * inside_T3
    unguarded = Retargeter(g1, RetargetConfig(self_collision=CollisionConfig(enabled=False))).retarget(through, fps)
    guarded = Retargeter(g1).retarget(through, fps)
    capsules = SelfCollision(g1, CollisionConfig())
    data = g1.model.createData()
    before = []
    for q in unguarded.configurations():
        pin.framesForwardKinematics(g1.model, data, q)
        before.append(capsules.distances(data)[2].min())
    assert min(before) < 0.0  # tracking alone drives the arm into the body
    rep = guarded.report
    assert rep.self_penetrations == 0, rep.format()
    assert rep.self_distance_min_cm["arm_torso"]["min_cm"] >= 0.0
    held = {pair: cm for pair, cm in rep.self_distance_pairs_cm.items() if pair.startswith("right_w")}
    assert any(pair.endswith("torso_link") and cm >= 0.0 for pair, cm in held.items()), rep.self_distance_pairs_cm
    assert set(rep.self_distance_min_cm) == {"arm_torso", "arm_arm", "arm_leg", "leg_leg"}


def test_segment_distances_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    a, b, c, d = (rng.normal(size=(50, 3)) for _ in range(4))
    p, q, dist = segment_distances(a, b, c, d)
    s = np.linspace(0, 1, 401)
    for n in range(50):
        pts1 = a[n] + s[:, None] * (b[n] - a[n])
        pts2 = c[n] + s[:, None] * (d[n] - c[n])
        brute = np.linalg.norm(pts1[:, None] - pts2[None], axis=2).min()
        assert dist[n] <= brute + 1e-9 and dist[n] > brute - 5e-3
        assert np.isclose(np.linalg.norm(p[n] - q[n]), dist[n])


def test_limits_hold_inside_the_qp_without_clipping(g1) -> None:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    joints, fps = real_clips(("kick",))["kick"]
    fast = joints[::2]  # twice as fast: speed limits bind
    rep_traj = Retargeter(g1).retarget(fast, fps)
    rep = rep_traj.report
    pos = rep_traj.positions
    assert np.all(pos >= g1.lower) and np.all(pos <= g1.upper)  # exactly, no tolerance
    steps = np.abs(np.diff(pos, axis=0)) * rep_traj.control_rate
    assert np.all(steps <= g1.velocity_limits * (1 + 1e-6))
    assert rep.resample_correction_rad == 0.0  # nothing changed after the QP
    active = {name: c for name, c in rep.clamped.items() if c["position_limit"] + c["velocity_limit"] > 0}
    assert active and any(c["tracking_cost"] > 0 for c in active.values()), rep.format()
    assert "tracking cost" in rep.format()


def test_walking_is_not_a_standing_motion(g1) -> None:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    joints, fps = real_clips(("walk",))["walk"]
    report = Retargeter(g1).retarget(joints, fps).report
    assert not report.standing and report.balance_keyframes_outside == 0
    assert report.contact_fraction["left"] < 0.9  # feet lift: contacts detected, not pinned for the whole clip
    # stand_in_place (how the pipeline retargets a coarse plan): the same walk without its travel,
    # balanced, both feet pinned flat in the robot's own stance
    held = Retargeter(g1).retarget(joints, fps, stand_in_place=True)
    assert held.report.standing and held.report.com_over_support_fraction == 1.0, held.report.format()
    travel_N = np.linalg.norm(held.base_poses[:, :2] - held.base_poses[:1, :2], axis=1)
    assert travel_N.max() < 0.1  # m (the walk itself covers metres)
    assert held.report.foot_slide_max_cm < 0.5


def _reference_rows(capsules: SelfCollision, model, data, candidates: np.ndarray | None = None):
    """The self-collision rows pair by pair, one ``getFrameJacobian`` (LOCAL_WORLD_ALIGNED) per closest
    point, as before the vectorised ``rows`` (issue #19): ``n^T (J_pa - J_pb)``, ``J_p = J_v - [p - o]_x J_w``."""
    pairs = capsules.pair_P2 if candidates is None else capsules.pair_P2[candidates]
    floors = capsules.floor_P if candidates is None else capsules.floor_P[candidates]
    A, lower = [], []
    for (i, j), floor in zip(pairs, floors):
        ends = []
        for link in (i, j):
            M = data.oMf[capsules.frame_ids[link]]
            ends += [M.act(capsules.local_a_L3[link]), M.act(capsules.local_b_L3[link])]
        p, q, centre = (x[0] for x in segment_distances(*(e[None] for e in ends)))
        distance = centre - capsules.radius_L[i] - capsules.radius_L[j]
        if distance >= capsules.config.activation_distance:
            continue
        n = (p - q) / centre
        row = np.zeros(model.nv)
        for point, link, sign in ((p, i, 1.0), (q, j, -1.0)):
            frame = capsules.frame_ids[link]
            J = pin.getFrameJacobian(model, data, frame, pin.LOCAL_WORLD_ALIGNED)
            row += sign * n @ (J[:3] - pin.skew(point - data.oMf[frame].translation) @ J[3:])
        gap = distance - floor
        A.append(row)
        lower.append(-gap if gap >= 0 else -PUSH_OUT * gap)
    return np.reshape(A, (-1, model.nv)), np.asarray(lower)


def test_vectorised_collision_rows_equal_the_per_point_jacobians(wave, g1) -> None:
    """Issue #19: ``rows`` (one placement fetch per link, ``data.J`` with support masks, every pair at
    once) gives the rows of the per-pair ``getFrameJacobian`` computation to 1e-12, in the same order,
    with all pairs and with a candidate subset (the broad phase), at poses along a real clip and
    perturbed ones (closer pairs, penetrations: the PUSH_OUT branch)."""
    joints, fps = wave
    capsules = SelfCollision(g1, CollisionConfig())
    model, data = g1.model, g1.model.createData()
    rng = np.random.default_rng(0)
    configurations = Retargeter(g1).retarget(joints, fps).configurations()[::4]
    noisy = configurations.copy()
    noisy[:, 7:] = np.clip(noisy[:, 7:] + rng.normal(scale=0.4, size=noisy[:, 7:].shape), g1.lower, g1.upper)
    rows = pushed = 0
    for q in np.concatenate([configurations, noisy]):
        pin.computeJointJacobians(model, data, q)
        pin.updateFramePlacements(model, data)
        candidates = capsules.candidates(data)
        for subset in (None, candidates, candidates[::2]):
            A, lower, upper = capsules.rows(model, data, subset)
            A_ref, lower_ref = _reference_rows(capsules, model, data, subset)
            assert A.shape == A_ref.shape
            np.testing.assert_allclose(A, A_ref, rtol=0, atol=1e-12)
            np.testing.assert_allclose(lower, lower_ref, rtol=0, atol=1e-12)
            assert np.all(upper == np.inf)
        full, searched = capsules.rows(model, data), capsules.rows(model, data, candidates)
        assert all(np.array_equal(x, y) for x, y in zip(full, searched))  # at its search, the broad phase misses none
        rows += len(full[0])
        pushed += int((full[1] > 0).sum())
    assert rows > 100 and pushed > 0


def test_retargeting_with_vectorised_rows_equals_the_per_point_computation(wave, g1, monkeypatch) -> None:
    """Issue #19, end to end on a real standing clip with every constraint on (limits, balance,
    self-collision): the trajectory with the vectorised rows equals the one with the per-pair
    reference rows to 1e-8 rad (measured: < 1e-12 rad; only rounding differs)."""
    joints, fps = wave
    fast = Retargeter(g1).retarget(joints, fps)

    def reference_rows(self, model, data, candidates=None):
        A, lower = _reference_rows(self, model, data, candidates)
        return A, lower, np.full(len(lower), np.inf)

    monkeypatch.setattr(SelfCollision, "rows", reference_rows)
    reference = Retargeter(g1).retarget(joints, fps)
    assert fast.report.standing and reference.report.standing
    np.testing.assert_allclose(fast.positions, reference.positions, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fast.base_poses, reference.base_poses, rtol=0, atol=1e-8)


def test_task_rows_from_one_joint_jacobian_equal_the_per_frame_jacobians(wave, g1) -> None:
    """Issue #19: the IK's weighted task rows ``W A`` (every frame's LOCAL_WORLD_ALIGNED Jacobian made from
    ``data.J`` and one placement read, the sparse ``M_J`` as two row gathers) and its error ``b`` equal
    ``W M_J [getFrameJacobian(frame) ...]`` and ``t_k - M_p p`` with ``log3`` orientation rows to 1e-12,
    at poses along a real clip and perturbed ones, and the collision links' placements are returned."""
    joints, fps = wave
    retargeter = Retargeter(g1)
    ik = retargeter.ik
    tg, _, _ = retargeter.targets(joints, fps)
    ik._prepare(tg)
    rng = np.random.default_rng(1)
    configurations = retargeter.retarget(joints, fps).configurations()[::10]
    noisy = configurations.copy()
    noisy[:, 7:] = np.clip(noisy[:, 7:] + rng.normal(scale=0.5, size=noisy[:, 7:].shape), g1.lower, g1.upper)
    model, data = g1.model, ik.data
    links = np.array([0, 3, 7, 11])
    for k, q in enumerate(np.concatenate([configurations, noisy])):
        k = k % len(tg)
        Aw, b, H_L44 = ik._linearise(q, tg, k, links)
        pin.computeJointJacobians(model, data, q)
        pin.updateFramePlacements(model, data)
        J_all = np.array([pin.getFrameJacobian(model, data, f, pin.LOCAL_WORLD_ALIGNED) for f in ik.unique_ids])
        p_all = np.array([data.oMf[f].translation for f in ik.unique_ids])
        A_ref = ik.M_J @ J_all.reshape(-1, model.nv)
        b_ref = ik.t_K[k] - ik.M_p @ p_all.reshape(-1)
        R_targets = [tg.pelvis_R_T33[k], tg.torso_R_T33[k], tg.foot_R_T233[k, 0], tg.foot_R_T233[k, 1]]
        for (row, u), R_target in zip(ik.orientation_rows, R_targets):
            b_ref[row : row + 3] = pin.log3(R_target @ data.oMf[ik.unique_ids[u]].rotation.T)
        np.testing.assert_allclose(Aw, A_ref * ik.w_K[k][:, None], rtol=0, atol=1e-12)
        np.testing.assert_allclose(b, b_ref, rtol=0, atol=1e-12)
        expected = [data.oMf[retargeter.collision.frame_ids[link]].homogeneous for link in links]
        np.testing.assert_allclose(H_L44, expected, rtol=0, atol=0)


def test_a_standing_motion_started_from_a_pose_keeps_that_pose_s_feet(wave, g1) -> None:
    """Every plan of a command starts at the same pose; a standing one pins the feet where that pose
    has them, so two different motions (here the clip and its upper body leant forward) stand on the
    same stance, and a plan replacing the other moves no foot."""
    joints, fps = wave
    retargeter = Retargeter(g1)
    first = retargeter.retarget(joints, fps)
    start_q = first.configuration_at(0.0)
    data = g1.model.createData()
    pin.framesForwardKinematics(g1.model, data, start_q)
    feet = [g1.frame_ids[f"{side}_ankle"] for side in ("left", "right")]
    stance = [data.oMf[f].copy() for f in feet]
    moved = joints.copy()
    moved[..., 0] += 0.06  # the human stands 6 cm to the side (its stance would be elsewhere)
    for motion in (joints, _lean_forward(moved, 15.0)):
        plan = retargeter.retarget(motion, fps, initial_q=start_q)
        assert plan.report.standing
        for q in plan.configurations()[:: max(1, len(plan.times) // 40)]:
            pin.framesForwardKinematics(g1.model, data, q)
            for f, placed in zip(feet, stance):
                assert np.linalg.norm(data.oMf[f].translation - placed.translation) < 0.005  # m
                angle = np.linalg.norm(pin.log3(placed.rotation.T @ data.oMf[f].rotation))
                assert angle < np.radians(1.0)


def test_a_narrow_human_stance_is_widened_to_the_robot_s_minimum(wave, g1) -> None:
    """A person standing with the feet close together (here the clip's legs moved 5 cm inwards each)
    is retargeted on feet at least ``min_stance_width`` apart sideways; without the widening the
    robot stands as narrow as the person."""
    joints, fps = wave
    narrow = joints.copy()
    for side, inwards in (("left", -0.05), ("right", 0.05)):  # canonical: left is +x
        for part in ("knee", "ankle", "foot"):
            narrow[:, JOINT[f"{side}_{part}"], 0] += inwards
    widths = {}
    for min_width in (0.0, 0.2):
        config = RetargetConfig(balance=BalanceConfig(min_stance_width=min_width))
        plan = Retargeter(g1, config).retarget(narrow, fps)
        assert plan.report.standing
        data = g1.model.createData()
        pin.framesForwardKinematics(g1.model, data, plan.configuration_at(plan.duration / 2))
        left, right = (data.oMf[g1.frame_ids[f"{s}_ankle"]].translation for s in ("left", "right"))
        pelvis_R = data.oMf[g1.frame_ids["pelvis"]].rotation
        widths[min_width] = float((left - right) @ pelvis_R[:, 1])  # sideways (the pelvis' y axis: left)
    assert widths[0.0] < 0.17  # the person's stance
    assert widths[0.2] == pytest.approx(0.2, abs=0.01)
