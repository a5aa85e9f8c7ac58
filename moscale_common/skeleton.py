"""The canonical human joint layout: HumanML3D's 22 SMPL joints, their tree and frame rate.

Positions are y-up, metres, ground at y = 0, the first frame's root at x = z = 0 facing +z (the
character's left is +x); a motion is ``joints_T223`` ``(T, 22, 3)`` at :data:`CANONICAL_FPS`.
"""

from __future__ import annotations

CANONICAL_JOINTS: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip
CANONICAL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
NUM_JOINTS = 22
CANONICAL_FPS = 20.0
JOINT_INDEX = {name: i for i, name in enumerate(CANONICAL_JOINTS)}
