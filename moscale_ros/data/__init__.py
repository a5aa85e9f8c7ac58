"""Motion data: BVH I/O and FK (:mod:`.bvh`), the canonical skeleton and skeleton maps (:mod:`.skeleton`),
HumanML3D 263-d features (:mod:`.features`), descriptions (:mod:`.text`), the prepared cache
(:mod:`.prepare`, :mod:`.dataset`), the HumanML3D folder loader (:mod:`.humanml3d`), mirroring
(:mod:`.augment`) and canonical BVH export (:mod:`.canonical_bvh`). No ROS imports here."""
