"""``gather`` rebuilds a comparison from what its ``compare.yaml`` recorded: aliases (with
their parameters), ``--param`` values and the budget come back as they were given, so the
comparison reopens without a "started with other settings" refusal; a tuning's directory is
refused with what to do instead. The Slurm and killed-run cases are in test_executors.py."""

import json

import pytest

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.errors import OutputError
from anpyc.experiments.compare import compare
from anpyc.experiments.gather import gather

BASE = {"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 60}, "model": {"hidden": [8]},
        "train": {"batch_size": 30}}


def test_gather_rebuilds_a_comparison_with_aliases_parameters_and_its_budget(tmp_path):
    out = tmp_path / "cmp"
    aliases = {"ewc-strong": ("ewc", {"lam": 1000.0, "fisher_samples": 20})}
    params = {"ewc": {"fisher_samples": 20}}
    ran = compare(RunConfig.from_dict(BASE), ["ewc", "ewc-strong"], [0], out, params=params, aliases=aliases,
                  budget="epochs", quiet=True, report=False)
    (out / rundir.SUMMARY_JSON).unlink()  # gathered afresh from the runs, not read back

    summary = gather(out, quiet=True)
    assert list(summary["methods"]) == ["ewc", "ewc-strong"] and summary["failed"] == []
    assert summary["budget"]["mode"] == "epochs"
    for label in ("ewc", "ewc-strong"):  # the same finished runs, read back
        assert summary["methods"][label]["avg_acc"] == ran["methods"][label]["avg_acc"]
    assert json.loads((out / rundir.SUMMARY_JSON).read_text())["methods"].keys() == {"ewc", "ewc-strong"}


def test_a_tuning_directory_is_refused_with_what_to_run_instead(tmp_path):
    (tmp_path / rundir.TUNE).write_text("method: ewc\n")
    with pytest.raises(OutputError, match=r"holds a tuning: run its tune command again \(without --overwrite\) to gather it"):
        gather(tmp_path)
