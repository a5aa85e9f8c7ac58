"""Training loops: progress, periodic validation, safe checkpoints and resume, fixed seeds."""
