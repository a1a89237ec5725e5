"""Property-based: bad configs, data files and checkpoints give one clear line, exit code 2,
and never change a byte of an existing result or checkpoint.

Every example points ``--out`` at a finished run with ``--overwrite`` (or resumes a killed
run), so an input that slipped through validation would visibly damage it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import re
import shutil
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from anpyc.callbacks import checkpoint as ck
from anpyc.cli import main
from anpyc.config import ModelConfig, RunConfig, StreamConfig, TrainConfig
from anpyc.data import sources
from anpyc.data.idx import write_idx
from anpyc.data.streams import STREAMS
from anpyc.errors import ConfigError
from anpyc.models import BODIES
from anpyc.runner import run

SETTINGS = settings(
    max_examples=50, deadline=None, database=None, derandomize=True,  # the same examples in CI as here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE = {
    "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 100},
    "model": {"hidden": [8]},
    "train": {"epochs": 2, "threads": 1},
}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def expect_clean_error(argv: list[str], protected: Path) -> str:
    """Run the CLI; it must fail with exit 2 and one ``anpyc: error:`` line, touching nothing."""
    before = snapshot(protected)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    assert code == 2, f"exit {code}, stderr {err.getvalue()!r}"
    assert len(lines) == 1 and lines[0].startswith("anpyc: error: "), lines
    assert snapshot(protected) == before, "an existing result was changed"
    return lines[0]


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bad") / "finished"
    run(RunConfig.from_dict(BASE), out, quiet=True)
    assert (out / "metrics.json").is_file() and ck.list_checkpoints(out)
    return out


# ----------------------------------------------------------------------------- configs
def _fields(cls) -> dict[str, object]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


SECTIONS = {"stream": _fields(StreamConfig), "model": _fields(ModelConfig), "train": _fields(TrainConfig)}
TOP = {"method", "method_params", "stream", "model", "train", "seed", "meta"}
def _base_type(tp):
    """``int | None`` -> ``int``; other annotations unchanged."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


# every field of the config dataclasses by its type, so fields added later are covered too
FIELDS_OF = {kind: {(s, k) for s, f in SECTIONS.items() for k, tp in f.items() if _base_type(tp) is kind}
             for kind in (int, float, bool)}
INTS, FLOATS, BOOLS = FIELDS_OF[int], FIELDS_OF[float], FIELDS_OF[bool]
# (section, key) -> values out of range (the type is right)
OUT_OF_RANGE = {
    **{k: st.integers(-10**6, 0) for k in INTS},
    ("train", "lr"): st.one_of(st.floats(max_value=0.0, allow_nan=False), st.sampled_from(["inf", "nan"]),
                               st.floats(min_value=3.5e38, allow_infinity=False)),
    ("train", "momentum"): st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0)),
    ("train", "weight_decay"): st.floats(max_value=-1e-9),
    ("train", "grad_clip"): st.floats(max_value=0.0),
    ("stream", "val_fraction"): st.one_of(st.floats(max_value=0.0), st.floats(min_value=0.5)),
    ("model", "dropout"): st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0)),
    ("model", "hidden"): st.lists(st.integers(-100, 0), min_size=1, max_size=3),
}


def _parses_as_number(text: str) -> bool:
    for conv in (int, float):
        try:
            conv(text)
            return True
        except ValueError:
            pass
    return text.strip().lower() in ("none", "null", "true", "false", "yes", "no", "1", "0")


words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
non_numeric_text = words.filter(lambda s: not _parses_as_number(s) and "," not in s)
containers = st.one_of(st.lists(st.integers(), min_size=2, max_size=3), st.dictionaries(words, st.integers(), min_size=1, max_size=2))


def wrong_type(section: str, key: str):
    """Values of the wrong type for ``section.key``."""
    if (section, key) in INTS:
        return st.one_of(non_numeric_text, st.floats(allow_nan=False).filter(lambda f: not float(f).is_integer()),
                         st.booleans(), containers)
    if (section, key) in FLOATS:
        return st.one_of(non_numeric_text, st.booleans(), containers)
    if (section, key) in BOOLS:
        return st.one_of(st.integers(), non_numeric_text, containers)
    if key in ("head", "optimizer"):
        return st.one_of(words.filter(lambda s: s not in ("multi", "single", "sgd", "adam")), st.integers())
    if key == "hidden":
        return st.one_of(st.lists(non_numeric_text, min_size=1, max_size=2), st.dictionaries(words, st.integers(), min_size=1))
    if key == "benchmark":
        return st.one_of(words.filter(lambda s: s not in STREAMS),
                         st.integers(), containers)
    if key == "name":
        return st.one_of(words.filter(lambda s: s not in BODIES), st.integers(), containers)
    return st.one_of(st.integers(), st.booleans(), containers)  # str fields: device, data_dir


@st.composite
def bad_config(draw) -> tuple[str, dict]:
    data = {k: dict(v) for k, v in BASE.items()}
    kind = draw(st.sampled_from(["unknown-key", "wrong-type", "out-of-range", "not-a-mapping", "method-params"]))
    if kind == "unknown-key":
        section = draw(st.sampled_from([None, "stream", "model", "train"]))
        known = TOP if section is None else set(SECTIONS[section])
        key = draw(words.filter(lambda s: s not in known))
        (data if section is None else data[section])[key] = draw(st.integers())
    elif kind == "wrong-type":
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(st.sampled_from(sorted(SECTIONS[section])))
        data[section][key] = draw(wrong_type(section, key))
    elif kind == "out-of-range":
        section, key = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
        data[section][key] = draw(OUT_OF_RANGE[(section, key)])
    elif kind == "not-a-mapping":
        section = draw(st.sampled_from(["stream", "model", "train", "method_params"]))
        data[section] = draw(st.one_of(st.integers(), non_numeric_text, st.lists(st.integers(), min_size=1)))
    else:
        data["method_params"] = draw(st.dictionaries(words, st.integers(), min_size=1, max_size=3))
    return kind, data


@SETTINGS
@given(case=bad_config())
def test_bad_configs_fail_cleanly(case, result_dir, tmp_path, bad_input_count):
    kind, data = case
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(yaml.safe_dump(data, allow_unicode=True))
    line = expect_clean_error(
        ["run", "--method", "finetune", "--config", str(cfg_file), "--out", str(result_dir), "--overwrite", "--quiet"],
        result_dir,
    )
    assert "already holds a run" not in line
    bad_input_count["config"] = bad_input_count.get("config", 0) + 1


@SETTINGS
@given(text=st.text(max_size=40))
def test_malformed_config_files_fail_cleanly(text, result_dir, tmp_path, bad_input_count):
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = "unparseable"
    # skip texts that are a valid (possibly empty) config: those would run
    assume(not (parsed is None or (isinstance(parsed, dict) and not parsed)))
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(text)
    expect_clean_error(
        ["run", "--method", "finetune", "--config", str(cfg_file), "--out", str(result_dir), "--overwrite", "--quiet"],
        result_dir,
    )
    bad_input_count["config"] = bad_input_count.get("config", 0) + 1


def test_empty_method_list_and_missing_flags_fail_cleanly(result_dir, bad_input_count):
    expect_clean_error(["compare", "--methods", " , ", "--benchmark", "blobs", "--out", str(result_dir)], result_dir)
    expect_clean_error(["run", "--benchmark", "blobs", "--out", str(result_dir)], result_dir)
    expect_clean_error(["run", "--resume", str(result_dir), "--epochs", "3"], result_dir)
    bad_input_count["config"] = bad_input_count.get("config", 0) + 3


@pytest.mark.parametrize("argv, words", [
    (["compare", "--methods", "finetune", "--seeds", "0"], "--seeds: expected a whole number >= 1"),  # was an IndexError
    (["compare", "--methods", "finetune", "--seeds", "-2"], "--seeds: expected a whole number >= 1"),
    (["compare", "--methods", "finetune", "--jobs", "0"], "--jobs"),
    (["bench", "quick", "--seeds", "0"], "--seeds: expected a whole number >= 1"),  # ran the suite's default seeds
    (["tune", "--method", "ewc", "--param", "lam=1,3", "--seeds", "x"], "--seeds: expected a whole number >= 1, got 'x'"),
    (["run", "--method", "finetune", "--nproc", "0"], "--nproc: expected a whole number >= 1"),  # ran one process
    (["compare", "--methods", "finetune", "--benchmark", "blobs", "--seed", "-1"], "seed must be >= 0"),
    (["run", "--method", "finetune", "--scenario", "xyz"], "invalid choice: 'xyz'"),  # argparse's errors: one line too
    (["compare", "--methods", "finetune", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["run", "--method", "finetune", "--hidden", ""], "model.hidden must be one or more"),  # was a StopIteration
    (["compare", "--methods", "ewc,si,ewc"], "--methods lists method ewc more than once"),  # ran it once, silently
    (["compare", "--protocol", "pmnist10", "--methods", "ewc", "--budget", "epochs"],
     "protocol pmnist10 has budget 'passes'; drop --budget"),
    (["tune", "--protocol", "pmnist10", "--method", "ewc", "--stream-from", "examples/own_data.py:make"],
     "tune --protocol runs the protocol's stream; drop --stream-from (or --protocol)"),
    (["tune", "--method", "ewc", "--benchmark", "blobs"], "tune needs at least one --param"),  # ran a one-point grid
    (["tune", "--method", "ewc", "--param", "lam=1,,10"], "an empty value in the grid"),  # dropped it silently
    # a key given twice: the last won without a word (here a grid cut to one point)
    (["tune", "--method", "ewc", "--param", "lam=1,3", "--param", "lam=10"], "--param lam is given twice (lam=1,3 and lam=10)"),
    (["compare", "--methods", "ewc", "--param", "ewc.lam=1", "--param", "ewc.lam=2"], "--param ewc.lam is given twice"),
    # a parameter for a method nothing runs was dropped without a word (a typo, or one left out of --methods)
    (["compare", "--methods", "ewc", "--param", "ewk.lam=3"], "--param ewk.lam: no method ewk is run here (did you mean 'ewc'?); methods: ewc"),
    (["bench", "quick", "--methods", "finetune", "--param", "ewc.lam=3", "--allow-dirty"], "no method ewc is run here; methods: finetune"),
    (["compare", "--methods", "ewc", "--preset", "ewc-pmnist10"],  # taken as --presets, "unrecognized: ewc-pmnist10"
     "unrecognized arguments: --preset ewc-pmnist10"),
    # a body flag the model has no use for ran without it, and config.yaml recorded it
    (["run", "--method", "finetune", "--model", "cnn", "--hidden", "64"], "--hidden applies only to --model mlp or vae or gan"),
    (["run", "--method", "finetune", "--width", "8"], "--width applies only to --model cnn or resnet18 (this run's model is mlp)"),
    (["run", "--method", "finetune", "--model", "vae", "--benchmark", "split-mnist", "--scenario", "class"],
     "scenario 'class' applies to classifiers"),  # ran the task scenario, recorded class
    # a device this torch build lacks: a traceback from the first tensor put on it
    (["run", "--method", "finetune", "--benchmark", "blobs", "--device", "xpu"], "train.device is 'xpu', which this torch build cannot use"),
    (["run", "--method", "finetune", "--benchmark", "blobs", "--device", "hpu"], "train.device is 'hpu', which this torch build cannot use"),
    (["run", "--method", "finetune", "--benchmark", "blobs", "--device", "meta"], "train.device is 'meta', which holds no values"),
])
def test_counts_seeds_and_argparse_errors_fail_cleanly(argv, words, result_dir, bad_input_count):
    line = expect_clean_error([*argv, "--out", str(result_dir), "--overwrite"], result_dir)
    assert words in line and "usage:" not in line, line
    bad_input_count["config"] = bad_input_count.get("config", 0) + 1


@pytest.mark.parametrize("model, words", [
    ({"name": "cnn", "hidden": [64]}, "model.hidden in {file} applies only to --model mlp or vae or gan"),
    ({"name": "mlp", "width": 8}, "model.width in {file} applies only to --model cnn or resnet18 (this run's model is mlp)"),
    ({"name": "vae", "dropout": 0.5}, "model.dropout in {file} applies only to --model mlp or cnn"),
])
def test_a_config_file_body_setting_the_model_does_not_use_is_refused(model, words, result_dir, tmp_path,
                                                                      bad_input_count):
    """As for the flags: the run ran without it and its config.yaml recorded it as if it had acted."""
    cfg_file = tmp_path / "body.yaml"
    cfg_file.write_text(yaml.safe_dump({"model": model}))
    line = expect_clean_error(["run", "--method", "finetune", "--config", str(cfg_file), "--out", str(result_dir),
                               "--overwrite", "--quiet"], result_dir)
    assert words.format(file=cfg_file) in line, line
    bad_input_count["config"] = bad_input_count.get("config", 0) + 1


def test_a_saved_config_records_unused_body_fields_at_their_defaults_and_is_taken(tmp_path):
    """A config.yaml records every model field; those at their defaults shape nothing and pass."""
    from anpyc.cli import _config_from_args, build_parser

    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump({"method": "finetune", "model": {"name": "cnn", "hidden": [256, 256],
                                                                     "dropout": 0.0, "width": 8}}))
    args = build_parser().parse_args(["run", "--config", str(saved), "--out", str(tmp_path / "r")])
    assert _config_from_args(args, "finetune").model.width == 8
    args = build_parser().parse_args(["run", "--config", str(saved), "--model", "mlp", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="model.width in .* applies only to --model cnn or resnet18"):
        _config_from_args(args, "finetune")


def test_python_api_refuses_empty_or_mistyped_arguments_with_one_line(tmp_path):
    from anpyc.errors import ConfigError
    from anpyc.experiments.compare import compare
    from anpyc.experiments.tune import tune
    from anpyc.methods import create

    base = RunConfig.from_dict(BASE)
    calls = {
        "one seed": lambda: compare(base, ["finetune"], seeds=[], out_dir=tmp_path / "c", quiet=True),  # IndexError once
        "a list of seeds": lambda: compare(base, ["finetune"], seeds=2, out_dir=tmp_path / "c", quiet=True),
        "a list of method ids": lambda: compare(base, "finetune", seeds=[0], out_dir=tmp_path / "c", quiet=True),
        "tune needs at least one seed": lambda: tune(base.with_params("ewc"), {"lam": [1.0, 3.0]}, seeds=[],
                                                     out_dir=tmp_path / "t", quiet=True),
        "compare lists seed 0 more than once": lambda: compare(base, ["finetune"], seeds=[0, 1, 0], out_dir=tmp_path / "c",
                                                               quiet=True),  # counted 3 seeds, seed 0 twice in the std
        "compare lists method ewc more than once": lambda: compare(base, ["ewc", "finetune", "ewc"], seeds=[0],
                                                                   out_dir=tmp_path / "c", quiet=True),
        "tune lists seed 2 more than once": lambda: tune(base.with_params("ewc"), {"lam": [1.0, 3.0]}, seeds=[2, 2],
                                                         out_dir=tmp_path / "t", quiet=True),
        "method_params (ewc): expected a mapping, got int": lambda: create("ewc", 5),  # TypeError once
        "config: expected a mapping, got list": lambda: RunConfig.from_dict([1, 2]),  # TypeError once
    }
    for message, call in calls.items():
        with pytest.raises(ConfigError, match=re.escape(message)) as err:
            call()
        assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- data files
TINY = {"train_x": (120, 4, 4), "train_y": (120,), "test_x": (40, 4, 4), "test_y": (40,)}
NAMES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def tiny_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: (rng.integers(0, 256, s) if k.endswith("x") else np.arange(s[0]) % 10).astype(np.uint8)
            for k, s in TINY.items()}


def tiny_spec(raws: dict[str, bytes]) -> sources.DatasetSpec:
    files = tuple(sources.IdxFile(k, NAMES[k], hashlib.md5(raws[k]).hexdigest(), None, TINY[k]) for k in TINY)
    return sources.DatasetSpec(name="mnist", files=files, urls=())


def idx_bytes(arr: np.ndarray, tmp: Path) -> bytes:
    return write_idx(arr, tmp / "f", compress=False).read_bytes()


def test_tiny_data_set_is_valid_before_corruption(tmp_path, monkeypatch):
    """Guards the property below: the uncorrupted files load, so errors come from corruption."""
    raws = {k: idx_bytes(a, tmp_path) for k, a in tiny_arrays().items()}
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for k, raw in raws.items():
        (folder / NAMES[k]).write_bytes(raw)
    monkeypatch.setitem(sources.DATASETS, "mnist", tiny_spec(raws))
    sources._load_cached.cache_clear()
    try:
        assert sources.load("mnist", tmp_path / "data")["train_x"].shape == (120, 4, 4)
    finally:
        sources._load_cached.cache_clear()


@st.composite
def corruption(draw):
    key = draw(st.sampled_from(sorted(TINY)))
    kinds = ["truncate", "magic", "dims", "flip", "extra", "gzip-truncate", "empty", "missing"]
    if key.endswith("_y"):
        kinds.append("label-out-of-range")
    kind = draw(st.sampled_from(kinds))
    return key, kind, draw(st.randoms(use_true_random=False))


def corrupt(raw: bytes, arr: np.ndarray, kind: str, rnd, tmp: Path) -> tuple[bytes | None, bytes | None]:
    """(new file bytes or None if deleted, new md5 source or None to keep the old checksum)."""
    header = 4 + 4 * arr.ndim
    if kind == "truncate":
        return raw[: rnd.randrange(0, len(raw))], None
    if kind == "magic":
        new = bytes(rnd.randrange(256) for _ in range(4))
        assume(new != raw[:4])
        return new + raw[4:], None
    if kind == "dims":
        dim = rnd.randrange(arr.ndim)
        value = rnd.randrange(2**32)
        assume(value != arr.shape[dim])
        return raw[: 4 + 4 * dim] + value.to_bytes(4, "big") + raw[8 + 4 * dim :], None
    if kind == "flip":
        pos = rnd.randrange(header, len(raw))
        return raw[:pos] + bytes([raw[pos] ^ (1 + rnd.randrange(255))]) + raw[pos + 1 :], None
    if kind == "extra":
        return raw + bytes(rnd.randrange(256) for _ in range(1 + rnd.randrange(16))), None
    if kind == "gzip-truncate":
        gz = gzip.compress(raw, mtime=0)
        return gz[: rnd.randrange(2, len(gz))], None
    if kind == "empty":
        return b"", None
    if kind == "missing":
        return None, None
    labels = arr.copy()  # label-out-of-range: a consistent file (right checksum) with a bad label
    labels[rnd.randrange(len(labels))] = 10 + rnd.randrange(246)
    new = idx_bytes(labels, tmp)
    return new, new


@SETTINGS
@given(case=corruption())
def test_bad_data_files_fail_cleanly(case, result_dir, tmp_path_factory, bad_input_count):
    key, kind, rnd = case
    tmp = tmp_path_factory.mktemp("data")
    arrays = tiny_arrays()
    raws = {k: idx_bytes(a, tmp) for k, a in arrays.items()}
    new, new_md5_source = corrupt(raws[key], arrays[key], kind, rnd, tmp)
    spec_raws = dict(raws)
    if new_md5_source is not None:
        spec_raws[key] = new_md5_source
    folder = tmp / "d" / "mnist"
    folder.mkdir(parents=True)
    for k, raw in raws.items():
        if k != key:
            (folder / NAMES[k]).write_bytes(raw)
    if new is not None:
        (folder / NAMES[key]).write_bytes(new)
    with pytest.MonkeyPatch.context() as m:
        m.setitem(sources.DATASETS, "mnist", tiny_spec(spec_raws))
        sources._load_cached.cache_clear()
        try:
            line = expect_clean_error(
                ["run", "--method", "finetune", "--benchmark", "split-mnist", "--data-dir", str(tmp / "d"),
                 "--out", str(result_dir), "--overwrite", "--quiet"],
                result_dir,
            )
        finally:
            sources._load_cached.cache_clear()
    if kind == "label-out-of-range":
        assert "label out of range" in line
    bad_input_count["data file"] = bad_input_count.get("data file", 0) + 1


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """A killed run (two checkpoints, no metrics) and checkpoints of two other runs."""
    root = tmp_path_factory.mktemp("ckpt")
    cfg = RunConfig.from_dict({**BASE, "train": {**BASE["train"], "checkpoint_every": 1}})
    real_save, calls = ck.save, []

    class Killed(BaseException):
        pass

    def save(run_dir, payload, keep=ck.KEEP):
        path = real_save(run_dir, payload, keep)
        calls.append(path)
        if len(calls) == 3:  # task 0 epoch 1, task 0 end, task 1 epoch 1
            raise Killed
        return path

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ck, "save", save)
        with pytest.raises(Killed):
            run(cfg, root / "killed", quiet=True)
    assert len(ck.list_checkpoints(root / "killed")) == 2
    run(cfg.replace(method="joint"), root / "joint", quiet=True)
    run(cfg.replace(model=ModelConfig(hidden=(4,))), root / "narrow", quiet=True)
    return {
        "killed": root / "killed",
        "foreign": [ck.list_checkpoints(root / d)[0] for d in ("joint", "narrow")],
    }


def tampered(raw: bytes, how: str) -> bytes:
    """A checkpoint with a valid checksum whose content does not fit the run."""
    payload = ck.decode(raw)
    payload.pop("file", None)
    if how == "model-shape":
        key = next(k for k in payload["model"] if k.endswith("weight"))
        payload["model"][key] = payload["model"][key][:-1]
    elif how == "drop-field":
        del payload["optimizer"]
    elif how == "position":
        payload["position"] = {"task": 7, "epoch": 0}
    elif how == "head-sizes":
        payload["head_sizes"] = payload["head_sizes"] + [4]
    elif how == "optimizer-groups":
        payload["optimizer"] = {"groups": [["no.such.param"]], "state": {}}
    elif how == "method-state":
        payload["method"] = {"tasks_seen": torch.zeros(3), "a.b": torch.zeros(1)}
    elif how == "progress":
        payload["progress"]["R"] = torch.zeros(5, 5)
    return ck.encode(payload)


@st.composite
def checkpoint_damage(draw):
    kinds = ["truncate", "flip", "random-bytes", "header", "foreign-method", "foreign-shape", "model-shape",
             "drop-field", "position", "head-sizes", "optimizer-groups", "method-state", "progress"]
    return [draw(st.sampled_from(kinds)) for _ in range(2)], draw(st.randoms(use_true_random=False))


@SETTINGS
@given(case=checkpoint_damage())
def test_bad_checkpoints_fail_cleanly(case, checkpoints, tmp_path_factory, bad_input_count):
    kinds, rnd = case
    work = tmp_path_factory.mktemp("resume") / "run"
    shutil.copytree(checkpoints["killed"], work)
    for path, kind in zip(ck.list_checkpoints(work), kinds):
        raw = path.read_bytes()
        if kind == "truncate":
            new = raw[: rnd.randrange(len(raw))]
        elif kind == "flip":
            pos = rnd.randrange(len(raw))
            new = raw[:pos] + bytes([raw[pos] ^ (1 + rnd.randrange(255))]) + raw[pos + 1 :]
        elif kind == "random-bytes":
            new = bytes(rnd.randrange(256) for _ in range(rnd.randrange(300)))
        elif kind == "header":
            new = b"ANPYC-CKPT 1 " + bytes(rnd.randrange(48, 58) for _ in range(64)) + raw[raw.index(b"\n"):]
        elif kind == "foreign-method":
            new = checkpoints["foreign"][0].read_bytes()
        elif kind == "foreign-shape":
            new = checkpoints["foreign"][1].read_bytes()
        else:
            new = tampered(raw, kind)
        path.write_bytes(new)
    line = expect_clean_error(["run", "--resume", str(work), "--quiet"], work)
    assert "checkpoint" in line or "ckpt-" in line, line
    shutil.rmtree(work.parent)
    bad_input_count["checkpoint"] = bad_input_count.get("checkpoint", 0) + 1


def test_resume_of_a_directory_without_a_run_fails_cleanly(tmp_path, bad_input_count):
    (tmp_path / "empty").mkdir()
    expect_clean_error(["run", "--resume", str(tmp_path / "empty")], tmp_path / "empty")
    expect_clean_error(["reproduce", str(tmp_path / "empty")], tmp_path / "empty")
    bad_input_count["checkpoint"] = bad_input_count.get("checkpoint", 0) + 2


def test_unusable_checkpoints_are_kept_for_inspection(checkpoints, tmp_path):
    """Failing to resume deletes nothing: not the bad checkpoints, not the partial log."""
    work = tmp_path / "run"
    shutil.copytree(checkpoints["killed"], work)
    for path in ck.list_checkpoints(work):
        path.write_bytes(path.read_bytes()[:50])
    expect_clean_error(["run", "--resume", str(work)], work)
    assert len(ck.list_checkpoints(work)) == 2
