"""Models: the motion tokenizer, the text encoder, the next-scale transformer, the length estimator."""
