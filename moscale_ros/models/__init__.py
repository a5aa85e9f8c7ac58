"""Models: the motion tokenizer (its quantiser owns the scale step), the text encoder, the next-scale
transformer, the next-token baseline's transformer, the length estimator."""
