"""Generation: streaming coarse-to-fine text-to-motion, guidance, refinement, continuation, editing."""
