"""A new stream in one file: six synthetic classes, two per task (offline)."""

from anpyc.data.streams import register_stream, synthetic_blobs


@register_stream("six-blobs", kind="split", standardize=False)  # the registry line: --benchmark six-blobs
def six_blobs(data_dir, seed):
    """The data set: train_x, train_y, test_x, test_y arrays; the kind makes the tasks."""
    return synthetic_blobs(seed, n_per_class=100, n_classes=6)
