"""A MuJoCo model of a robot, built from the URDF its robot YAML names (ROS-free).

Built with ``mujoco.MjSpec`` from the URDF text, with ``package://NAME/`` mesh paths made absolute
(the folder named ``NAME`` above the URDF file, as example-robot-data installs it), then:

* base: a free joint on the root link (floating, the default) or the root link welded to the world
  at ``base_pose`` (fixed base: only the joints move, the floor is drawn but not touched);
* a floor plane at ``z = 0`` with the YAML's friction;
* every controlled joint (``Robot.joint_names``) gets armature, damping and a position actuator
  ``tau = kp (ctrl - q) - kv q'`` clipped to ``+-effort_scale x`` the URDF effort limit; joints the
  YAML locks get the same actuator holding the locked value. The simulator sets
  ``ctrl = q* + (kv / kp) q'*``, which makes it the motor PD ``tau = kp (q* - q) + kv (q'* - q')``
  of a position-and-velocity command (what the G1's joint drivers take);
* self-collision: robot geoms (the URDF's collision meshes, as convex hulls) collide with the floor
  and with each other, except pairs of bodies already touching in the robot's start pose (hull
  approximations of neighbouring links) and parent-child pairs (MuJoCo's default).

Quaternions: Pinocchio (and trajectories) store ``[x y z qx qy qz qw]``, MuJoCo's free joint
``[x y z qw qx qy qz]``; :func:`to_mujoco_pose` / :func:`from_mujoco_pose` convert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from moscale_common.errors import ConfigError
from moscale_ros.sim.config import SimConfig, sim_config
from retarget.robot import Robot

FLOOR = "floor"
STANDING_BASE_POSE = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])


def to_mujoco_pose(base_pose_7: np.ndarray) -> np.ndarray:
    """``[x y z qx qy qz qw]`` -> ``[x y z qw qx qy qz]`` (normalised)."""
    pose = np.asarray(base_pose_7, dtype=np.float64)
    quat_4 = pose[[6, 3, 4, 5]]
    return np.concatenate([pose[:3], quat_4 / np.linalg.norm(quat_4)])


def from_mujoco_pose(qpos_7: np.ndarray) -> np.ndarray:
    """``[x y z qw qx qy qz]`` -> ``[x y z qx qy qz qw]``."""
    pose = np.asarray(qpos_7, dtype=np.float64)
    return np.concatenate([pose[:3], pose[[4, 5, 6, 3]]])


def resolve_package_uris(urdf_text: str, urdf_path: Path | None) -> str:
    """Replace every ``package://NAME/`` by the absolute folder named ``NAME`` above ``urdf_path``."""
    names = sorted(set(re.findall(r"package://([^/\"']+)/", urdf_text)))
    for name in names:
        folder = next((p for p in (urdf_path.parents if urdf_path else ()) if p.name == name), None)
        if folder is None:
            raise ConfigError(
                f"URDF mesh path package://{name}/ cannot be resolved (no folder {name!r} above the URDF)"
            )
        urdf_text = urdf_text.replace(f"package://{name}/", f"{folder}/")
    return urdf_text


@dataclass
class SimModel:
    """A compiled robot model and the index maps the simulator needs (arrays in ``robot.joint_names`` order)."""

    robot: Robot
    config: SimConfig
    model: mujoco.MjModel
    fixed_base: bool
    qpos_J: np.ndarray  # noqa: N815  qpos address of each controlled joint
    dof_J: np.ndarray  # noqa: N815  dof (qvel) address of each controlled joint
    actuator_J: np.ndarray  # noqa: N815  actuator id of each controlled joint
    effort_limits_J: np.ndarray  # noqa: N815  N m, the actuators' force range
    damping_ratio_J: np.ndarray  # noqa: N815  kv / kp of each actuator (s): velocity feed-forward
    locked_ctrl: dict[int, float]  # actuator id -> held position of locked joints
    root_body: int  # the root link's body (0, the world, for a fixed base: MuJoCo fuses it)
    foot_bodies: dict[str, int]  # "left"/"right" -> body id
    floor_geom: int
    excluded_pairs: list[tuple[str, str]]  # robot body pairs whose contacts are ignored (touching at rest)

    @property
    def num_joints(self) -> int:
        return len(self.qpos_J)

    @property
    def robot_geoms(self) -> np.ndarray:
        """Geom ids of the robot's collision geoms."""
        return np.flatnonzero((self.model.geom_bodyid > 0) & (self.model.geom_contype > 0))


def _urdf_text(robot: Robot, urdf_string: str | None) -> tuple[str, Path | None]:
    if urdf_string is not None:
        return urdf_string, None
    path = Path(robot.source)
    if not path.is_file():
        raise ConfigError(f"robot {robot.name}: URDF {robot.source!r} is not a file; pass its text as urdf_string")
    return path.read_text(encoding="utf-8"), path


def _body_of_frame(robot: Robot, model: mujoco.MjModel, frame: str) -> int:
    """MuJoCo body carrying Pinocchio frame ``frame``: the body moved by the frame's parent joint."""
    pin_model = robot.model
    joint = pin_model.names[pin_model.frames[pin_model.getFrameId(frame)].parentJoint]
    return int(model.jnt_bodyid[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)])


def _spec(
    robot: Robot, config: SimConfig, fixed_base: bool, base_pose_7: np.ndarray, urdf_string: str | None
) -> mujoco.MjSpec:
    text, path = _urdf_text(robot, urdf_string)
    text = resolve_package_uris(text, path)
    compiler = '<mujoco><compiler strippath="false" balanceinertia="true"/></mujoco>'
    text = re.sub(r"(<robot[^>]*>)", lambda m: m.group(1) + compiler, text, count=1)
    spec = mujoco.MjSpec.from_string(text)
    spec.option.timestep = config.timestep
    spec.option.integrator = getattr(mujoco.mjtIntegrator, f"mjINT_{config.integrator.upper()}")
    root = spec.worldbody.bodies[0]
    if fixed_base:
        pose = to_mujoco_pose(base_pose_7)
        root.pos, root.quat = pose[:3], pose[3:]
        # Welded to the world, the root link is fused into it and MuJoCo's parent-child contact
        # filter (which skips the world) no longer spares the links hinged on it: restore it.
        for child in root.bodies:
            spec.add_exclude(bodyname1="world", bodyname2=child.name)
    else:
        root.add_freejoint()
    floor = spec.worldbody.add_geom(
        name=FLOOR, type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05], rgba=[0.75, 0.78, 0.8, 1],
        friction=[config.friction, 0.005, 0.0001],
    )  # fmt: skip
    if fixed_base:
        floor.contype = floor.conaffinity = 0
    spec.worldbody.add_light(pos=[0, 0, 4], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    if not config.self_collision:
        for geom in spec.geoms:
            if geom.name != FLOOR:
                geom.conaffinity = 0  # robot geoms still touch the floor (floor contype 1 x robot conaffinity... )
        floor.contype = 0 if fixed_base else 1
    effort_J = robot.model.effortLimit[6:] * config.effort_scale
    for name, effort in zip(robot.joint_names, effort_J):
        joint = spec.joint(name)
        if joint is None:
            raise ConfigError(f"robot {robot.name}: joint {name!r} is not in the MuJoCo model")
        joint.armature, joint.damping = config.armature, [config.damping, 0.0, 0.0]
        kp, kv = config.gains(name)
        actuator = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=kp, kv=kv)
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        limit = float(effort) if effort > 0 else 1e3
        actuator.forcerange = [-limit, limit]
    for name in robot.config.locked_joints:
        joint = spec.joint(name)
        if joint is None:
            continue
        joint.armature, joint.damping = config.armature, [config.damping, 0.0, 0.0]
        kp, kv = config.gains(name)
        spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT).set_to_position(kp=kp, kv=kv)
    return spec


def _touching_pairs(sim: SimModel, data: mujoco.MjData) -> set[tuple[int, int]]:
    """Robot body pairs in contact in ``data`` (after ``mj_forward``)."""
    model = sim.model
    pairs = set()
    for contact in data.contact[: data.ncon]:
        b1, b2 = model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2]
        if b1 > 0 and b2 > 0 and b1 != b2:
            pairs.add((int(min(b1, b2)), int(max(b1, b2))))
    return pairs


def build_model(
    robot: Robot,
    config: SimConfig | None = None,
    fixed_base: bool = False,
    base_pose_7: np.ndarray | None = None,
    urdf_string: str | None = None,
) -> SimModel:
    """Compile the MuJoCo model of ``robot`` (module docstring); ``config`` defaults to the YAML's ``sim:``.

    ``base_pose_7`` places the welded root link of a fixed-base model (default: 1 m above the floor).
    Raises ConfigError if the URDF's meshes cannot be found or MuJoCo refuses the model."""
    config = config or sim_config(robot.config.sim, where=f"robot {robot.name}: sim")
    base_pose = STANDING_BASE_POSE if base_pose_7 is None else np.asarray(base_pose_7, dtype=np.float64)
    spec = _spec(robot, config, fixed_base, base_pose, urdf_string)
    try:
        model = spec.compile()
    except ValueError as exc:
        raise ConfigError(f"robot {robot.name}: MuJoCo cannot build the model ({exc})") from exc
    root_name = spec.worldbody.bodies[0].name
    sim = _index(robot, config, model, fixed_base, root_name, [])
    if config.self_collision:  # exclude the pairs that already touch in the start pose
        data = mujoco.MjData(model)
        data.qpos[sim.qpos_J] = robot.q_initial[7:]
        if not fixed_base:
            data.qpos[:7] = to_mujoco_pose(base_pose)
        mujoco.mj_forward(model, data)
        pairs = sorted(_touching_pairs(sim, data))
        names = [(model.body(a).name, model.body(b).name) for a, b in pairs]
        for a, b in names:
            spec.add_exclude(bodyname1=a, bodyname2=b)
        if names:
            model = spec.compile()
            sim = _index(robot, config, model, fixed_base, root_name, names)
    return sim


def _index(
    robot: Robot, config: SimConfig, model: mujoco.MjModel, fixed_base: bool, root_name: str, excluded: list
) -> SimModel:
    jid = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in robot.joint_names]
    aid = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in robot.joint_names]
    locked = {
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n): v
        for n, v in robot.config.locked_joints.items()
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) >= 0
    }
    return SimModel(
        robot=robot,
        config=config,
        model=model,
        fixed_base=fixed_base,
        qpos_J=np.asarray(model.jnt_qposadr[jid]),
        dof_J=np.asarray(model.jnt_dofadr[jid]),
        actuator_J=np.asarray(aid),
        effort_limits_J=np.asarray(model.actuator_forcerange[aid, 1]),
        damping_ratio_J=np.array([config.gains(n)[1] / config.gains(n)[0] for n in robot.joint_names]),
        locked_ctrl=locked,
        root_body=max(0, mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, root_name)),  # 0: fused into the world
        foot_bodies={side: _body_of_frame(robot, model, foot.frame) for side, foot in robot.config.feet.items()},
        floor_geom=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, FLOOR),
        excluded_pairs=list(excluded),
    )


def lowest_point(sim: SimModel, data: mujoco.MjData) -> float:
    """Lowest ``z`` of the robot's collision geoms in ``data`` (after kinematics): mesh vertices,
    sphere bottoms, bounding spheres of other shapes."""
    model, lowest = sim.model, np.inf
    for g in sim.robot_geoms:
        kind, centre_3 = model.geom_type[g], data.geom_xpos[g]
        if kind == mujoco.mjtGeom.mjGEOM_MESH:
            mesh = model.geom_dataid[g]
            start, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
            vert_V3 = model.mesh_vert[start : start + count]
            z_V = centre_3[2] + vert_V3 @ data.geom_xmat[g].reshape(3, 3)[2]
            lowest = min(lowest, float(z_V.min()))
        elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            lowest = min(lowest, float(centre_3[2] - model.geom_size[g, 0]))
        else:
            lowest = min(lowest, float(centre_3[2] - model.geom_rbound[g]))
    return lowest
