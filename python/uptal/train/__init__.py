"""Pre-training: the step (engine), the loop (pretrain), checkpoints, logging."""
