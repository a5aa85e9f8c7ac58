"""What ``moscale_ros`` and ``retarget`` share, so that neither imports the other's internals.

* :mod:`.errors`: ``MoScaleError`` and its subclasses (``ConfigError``, ``CheckpointError``,
  ``DataError``, ``InputError``); messages are user-facing.
* :mod:`.config`: the one config system (dataclasses filled from YAML, schema-checked).
* :mod:`.paths`: where shipped resources (``config/``, ``models/``) and caches live.
* :mod:`.skeleton`: the canonical human joint layout (HumanML3D's 22 SMPL joints).

Light on purpose: NumPy and PyYAML only (no torch, no Pinocchio, no ROS).
"""
