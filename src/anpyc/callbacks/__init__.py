"""Callbacks of the training loop: progress and logs, checkpoints, tracking (TensorBoard),
distributed synchronisation and the process group. The loop calls them; it imports none."""
