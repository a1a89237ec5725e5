"""Continual generation (``--model vae|gan``): the training step, the judging classifier and
the sample grids."""
