"""The training loop: the one caller of the method hooks (:mod:`anpyc.loop.train`)."""
