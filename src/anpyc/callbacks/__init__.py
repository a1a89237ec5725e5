"""Callbacks of the training loop: progress and logs, checkpoints, tracking (TensorBoard)."""
