"""Motion data: BVH I/O and FK (:mod:`.bvh`), skeleton maps onto the canonical joints (:mod:`.skeleton`;
the joint layout itself is :mod:`moscale_common.skeleton`), HumanML3D 263-d features (:mod:`.features`),
descriptions (:mod:`.text`), the prepared cache (:mod:`.prepare` writes it, :mod:`.prepared` holds it,
:mod:`.dataset` loads it and cuts windows and batches), the HumanML3D folder loader (:mod:`.humanml3d`),
motion files (:mod:`.motion_file`), mirroring (:mod:`.augment`) and canonical BVH export
(:mod:`.canonical_bvh`). No ROS imports here."""
