"""anpyc: continual learning without forgetting.

The core is ANPyC (adversarial neural pruning and synaptic consolidation, Peng et al.,
IEEE TNNLS 2021), shipped beside the baselines it is judged against, all behind one small
hook interface (:class:`anpyc.methods.Method`) that a user's own training loop can call.

Example:
    >>> from anpyc import RunConfig, run
    >>> cfg = RunConfig.from_dict({"method": "finetune", "stream": {"benchmark": "blobs"}})
    >>> result = run(cfg, quiet=True)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anpyc.config import ModelConfig, RunConfig, StreamConfig, TrainConfig
from anpyc.errors import AnpycError
from anpyc.version import __version__

if TYPE_CHECKING:
    from anpyc.runner import RunResult

__all__ = [
    "AnpycError",
    "ModelConfig",
    "RunConfig",
    "StreamConfig",
    "TrainConfig",
    "__version__",
    "compare",
    "run",
]


def run(*args, **kwargs) -> RunResult:  # noqa: D401 - thin lazy wrapper keeps `import anpyc` light
    """Run one configuration end to end; see :func:`anpyc.runner.run`.

    Example:
        >>> cfg = RunConfig.from_dict({"method": "ewc", "model": {"hidden": [8]},
        ...                            "stream": {"benchmark": "blobs", "tasks": 2}})
        >>> result = run(cfg, quiet=True)  # no out_dir: nothing is written
        >>> result.acc_matrix.shape, 0.0 <= result.metrics["avg_acc"] <= 1.0
        ((2, 2), True)
    """
    from anpyc.runner import run as _run

    return _run(*args, **kwargs)


def compare(*args, **kwargs) -> dict:  # noqa: D401 - thin lazy wrapper
    """Several methods on one stream, same passes and seeds; see :func:`anpyc.experiments.compare.compare`.

    Example:
        >>> cfg = RunConfig.from_dict({"model": {"hidden": [8]},
        ...                            "stream": {"benchmark": "blobs", "tasks": 2}})
        >>> summary = compare(cfg, ["finetune", "ewc"], seeds=[0], quiet=True)
        >>> list(summary["methods"]), sorted(summary["methods"]["ewc"]["avg_acc"])
        (['finetune', 'ewc'], ['mean', 'std'])
    """
    from anpyc.experiments.compare import compare as _compare

    return _compare(*args, **kwargs)
