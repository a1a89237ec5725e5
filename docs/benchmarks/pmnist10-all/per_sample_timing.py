"""Time EWC's Fisher and MAS's importance per task (1,000 examples, 784-256-256 MLP, one
thread): the closed form for Linear layers against torch.func per-sample gradients.

Run: python docs/benchmarks/pmnist10-all/per_sample_timing.py  (needs MNIST: anpyc data fetch mnist)
"""

import time

import torch

from anpyc import importance
from anpyc.config import ModelConfig, StreamConfig
from anpyc.data import make_stream
from anpyc.models import build_model

torch.set_num_threads(1)
stream = make_stream(StreamConfig(benchmark="permuted-mnist", tasks=1), seed=0)
model = build_model(ModelConfig(hidden=(256, 256)), stream.input_shape)
model.add_head(10)
data = stream[0].train
estimates = {
    "ewc fisher (sampled)": lambda: importance.fisher_diag(
        model, data, kind="sampled", max_samples=1000, generator=torch.Generator().manual_seed(0)),
    "mas": lambda: importance.mas_importance(model, data, max_samples=1000),
}


def seconds(fn, repeats: int = 2) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


closed = {name: seconds(fn) for name, fn in estimates.items()}
importance._linear_per_sample = lambda *args, **kwargs: None  # force the torch.func path
general = {name: seconds(fn) for name, fn in estimates.items()}
for name in estimates:
    print(f"{name}: closed form {closed[name]:.3f} s, torch.func {general[name]:.3f} s, "
          f"{general[name] / closed[name]:.0f}x")
