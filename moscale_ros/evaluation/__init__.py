"""Evaluation: the text-motion evaluator and the standard metrics."""
