"""Evaluation: the text-motion evaluator and the standard metrics, and the controlled comparison of
generation orders. No ROS imports here.

* :mod:`.metrics`: R-precision, FID, MM-Dist, diversity, multimodality, accuracy, 95 % intervals.
* :mod:`.model`: the contrastive text-motion evaluator with content/style classifiers (:func:`load_evaluator`).
* :mod:`.train`: ``moscale train evaluator``.
* :mod:`.evaluate`: the protocol (test windows, repeated runs, reference row) and ``moscale eval generator``.
* :mod:`.next_token`: the next-token (T2M-GPT order) baseline on the same transformer.
* :mod:`.compare`: ``moscale eval compare``, the controlled comparison written to docs/RESULTS.md.
"""
