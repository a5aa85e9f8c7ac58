"""Evaluation: the text-motion evaluator and the standard metrics, and the controlled comparison of
generation orders. No ROS imports here.

* :mod:`.metrics`: R-precision, FID, MM-Dist, diversity, multimodality, accuracy, 95 % intervals.
* :mod:`.model`: the contrastive text-motion evaluator with content/style classifiers (:func:`load_evaluator`);
  it is trained by :mod:`moscale_ros.training.evaluator` (``moscale train evaluator``).
* :mod:`.tokenizer`: per-prefix reconstruction and codebook usage of a tokenizer (``moscale eval tokenizer``).
* :mod:`.evaluate`: the protocol (test windows, repeated runs, reference row) and ``moscale eval generator``.
* :mod:`.compare`: ``moscale eval compare``, the controlled comparison (next-scale vs the next-token
  baseline of :mod:`moscale_ros.models.next_token`) written to docs/RESULTS.md.
"""
