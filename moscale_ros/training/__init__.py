"""Training: the shell every trainer shares (:mod:`.common`: config, session, loop, checkpoints, resume,
seeds) and one module per trained model: :mod:`.tokenizer`, :mod:`.transformer` (next-scale),
:mod:`.next_token` (the baseline), :mod:`.evaluator`."""
