"""How ANPyC's two Taylor forms of the importance relate to each other and to the Fisher.

Trains fine-tune on the first two tasks of a protocol's stream (seed 0), then scores every
shared parameter against each task's head with the removal form, max(-g*theta + theta^2 g^2 / 2,
0), the authors' form, max(g*theta + theta^2 g^2 / 2, 0) (`anpyc.kernels.importance.
entropy_taylor`, 2,000 examples in batches of 100, as `anpyc`'s default estimates Omega), and the
true Fisher on the same examples, and prints their rank correlations, the share each scores 0
and how much of its top tenth is the Fisher's top tenth.
Record: docs/benchmarks/ablation-default/taylor-form/README.md.

Usage: ANPYC_DATA=... python docs/scripts/taylor_forms.py [PROTOCOL]   (default pmnist10)
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from anpyc.config import RunConfig
from anpyc.experiments.protocols import protocol_config
from anpyc.kernels.importance import entropy_taylor, fisher_diag
from anpyc.runner import build_stream, run


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho, ties broken by position (a few per cent of the scores are tied at 0)."""
    ranks = [np.argsort(np.argsort(v)).astype(float) for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def top_share(score: np.ndarray, reference: np.ndarray, q: float = 0.1) -> float:
    """Share of ``score``'s top ``q`` that is in ``reference``'s top ``q``."""
    top = lambda v: v >= np.quantile(v, 1 - q)  # noqa: E731
    return float(np.mean(top(reference)[top(score)]))


def flat(scores: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([v.flatten() for v in scores.values()]).numpy()


def compare_forms(config: RunConfig, samples: int = 2000) -> list[dict[str, float]]:
    """Fine-tune ``config``'s stream, then per task the statistics :func:`main` prints."""
    stream = build_stream(config)  # built once: the run trains on it, the scores read it
    model = run(config, quiet=True, stream=stream).model
    rows = []
    for task in stream:
        removal = flat(entropy_taylor(model, task.train, form="removal", max_samples=samples))
        authors = flat(entropy_taylor(model, task.train, form="reference", max_samples=samples))
        fisher = flat(fisher_diag(model, task.train, max_samples=samples))
        rows.append({"parameters": removal.size, "zero_removal": float(np.mean(removal == 0)),
                     "zero_authors": float(np.mean(authors == 0)),
                     "rho_forms": rank_correlation(removal, authors),
                     "rho_removal_fisher": rank_correlation(removal, fisher),
                     "rho_authors_fisher": rank_correlation(authors, fisher),
                     "top_removal": top_share(removal, fisher), "top_authors": top_share(authors, fisher)})
    return rows


def main(protocol: str = "pmnist10") -> None:
    torch.set_num_threads(1)
    cfg = protocol_config(protocol).to_dict()
    cfg.update(method="finetune", method_params={})
    cfg["stream"]["tasks"] = 2
    for k, r in enumerate(compare_forms(RunConfig.from_dict(cfg))):
        print(f"task {k + 1} ({r['parameters']} shared parameters): scored 0 by removal "
              f"{r['zero_removal']:.3f}, by the authors' form {r['zero_authors']:.3f}")
        print(f"  rank correlation removal vs authors' {r['rho_forms']:.3f}; with the Fisher: "
              f"removal {r['rho_removal_fisher']:.3f}, authors' {r['rho_authors_fisher']:.3f}")
        print(f"  top tenth in the Fisher's top tenth: removal {r['top_removal']:.3f}, "
              f"authors' {r['top_authors']:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
