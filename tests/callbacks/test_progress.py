from anpyc.callbacks.progress import RunLogger


def test_the_bar_shows_progress_inside_a_task(monkeypatch):
    """A task of many batches is not silent: the bar shows the batch and its loss."""
    monkeypatch.delenv("CI", raising=False)
    logger = RunLogger(None, None, total=2, desc="t", quiet=False)
    try:
        logger.on_step(None, 7, 0.25)
        assert logger.bar.postfix == "batch 7, loss 0.250"
    finally:
        logger.close()
    assert RunLogger(None, None, total=2, desc="t", quiet=True).bar is None  # quiet: no bar
