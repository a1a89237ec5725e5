"""Your own data in the fair harness (the README shows this file whole; the tests run it).

From the command line: ``anpyc compare --methods finetune,ewc --stream-from examples/own_data.py:make
--seeds 2 --out runs/own`` (same passes, seeds, summary and report as a registered stream).
"""

import torch
from torch.utils.data import Dataset

from anpyc import RunConfig, compare, run
from anpyc.data import stream_from_datasets


class Prototypes(Dataset):
    """Yours instead: ``dataset[i] -> (x, y)``, read lazily (here: noisy 8 x 8 images of each class's prototype)."""

    def __init__(self, classes: list[int], n: int, seed: int) -> None:
        self.prototypes = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        self.labels = torch.tensor(classes).repeat(n // len(classes))
        self.noise = torch.Generator().manual_seed(seed)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)  # example i is always the same image
        y = int(self.labels[i])
        return self.prototypes[y] + 1.5 * torch.randn(1, 8, 8, generator=g), y


def make(seed: int = 0):
    """Five tasks of two classes each; the labels are the stream's class ids (every scenario takes them)."""
    train = [Prototypes([2 * t, 2 * t + 1], n=400, seed=2 * t) for t in range(5)]
    test = [Prototypes([2 * t, 2 * t + 1], n=200, seed=2 * t + 1) for t in range(5)]
    return stream_from_datasets(train, test, seed=seed, name="prototypes")  # validation: 10% of train, by seed


if __name__ == "__main__":
    stream = make(seed=0)
    result = run(RunConfig.from_dict({"method": "ewc"}), "runs/own-ewc", stream=stream, overwrite=True)
    summary = compare(RunConfig(), ["finetune", "ewc"], seeds=[0, 1], out_dir="runs/own-cmp", stream=make, overwrite=True)
    print(f"ewc: ACC {result.metrics['avg_acc']:.3f}; report in runs/own-ewc/report.html and runs/own-cmp/report.html")
