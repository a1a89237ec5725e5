"""What a new user meets first: help that explains every flag, lists of what there is, the
version, errors that come at once (before torch is imported) with the closest name."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import pytest

from anpyc.cli import build_parser, main

DEFAULT_ONLY = re.compile(r"^\(?default: [^)]*\)?\.?$")


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["run", "compare", "tune", "tune-all", "bench", "reproduce", "report", "list", "gather"])
def test_every_flag_has_a_sentence_not_only_its_default(command):
    for action in _subparser(command)._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        text = (action.help or "").strip()
        assert text and not DEFAULT_ONLY.match(text), f"{command} {action.option_strings or action.dest}: {text!r}"
        assert len(re.sub(r"\(default: [^)]*\)", "", text).split()) >= 3, f"{command} {action.option_strings}: {text!r}"


def test_help_names_the_choices_and_generative_flags_only_where_they_apply(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("permuted-mnist", "split-mnist", "blobs", "ewc", "anpyc-masks", "resnet18", "vae", "sgd, adam"):
        assert name in text
    assert "--latent-dim" in text and "only with --model vae or gan" in text
    for command in ("compare", "bench", "tune", "tune-all"):
        flags = {s for a in _subparser(command)._actions for s in a.option_strings}
        assert "--latent-dim" not in flags and "--samples-per-class" not in flags, command
    assert "--stream-from" in {s for a in _subparser("compare")._actions for s in a.option_strings}


def test_generative_flags_without_a_generative_model_are_an_error(tmp_path, capsys):
    assert main(["run", "--method", "finetune", "--latent-dim", "8", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "--latent-dim applies only to --model vae or gan" in capsys.readouterr().err


def test_version_and_lists(capsys):
    from anpyc.version import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"anpyc {__version__}"
    from anpyc.data.streams import STREAMS
    from anpyc.experiments.bench import SUITES
    from anpyc.experiments.presets import list_presets
    from anpyc.experiments.protocols import PROTOCOLS
    from anpyc.methods import method_names

    for what, names in (("methods", method_names()), ("streams", list(STREAMS)), ("protocols", list(PROTOCOLS)),
                        ("presets", list_presets()), ("suites", list(SUITES)), ("scenarios", ["task", "domain", "class"])):
        assert main(["list", what]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines] == names, what
        starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}
        assert len(starts) == 1, f"{what}: the second column is not aligned"
    assert main(["bench", "list"]) == 0
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in capsys.readouterr().out.splitlines()}
    assert len(starts) == 1  # one column for the descriptions


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "--method", "ewx", "--out", "{d}"], "unknown method 'ewx' (did you mean 'ewc'?)"),
        (["run", "--method", "ewc", "--benchmark", "split-mnits", "--out", "{d}"], "(did you mean 'split-mnist'?)"),
        (["compare", "--methods", "ewc,fintune", "--out", "{d}"], "(did you mean 'finetune'?)"),
        (["tune", "--method", "si", "--protocol", "pmnist01", "--out", "{d}"], "(did you mean 'pmnist10'?)"),
        (["run", "--method", "ewc", "--preset", "ewc-pmnist1", "--out", "{d}"], "(did you mean 'ewc-pmnist10'?)"),
        (["run", "--method", "ewc", "--device", "gpu", "--out", "{d}"], "train.device"),
        (["reproduce", "{d}", "--atol", "-1"], "--atol must be a finite number >= 0"),
        (["reproduce", "{d}", "--atol", "nan"], "--atol must be a finite number >= 0"),
        (["compare", "--methods", "ewc", "--stream-from", "nosuchmodule:make", "--out", "{d}"], "no module named 'nosuchmodule'"),
        (["compare", "--methods", "ewc", "--stream-from", "x:make", "--tasks", "3", "--out", "{d}"], "--tasks shapes a registered stream"),
    ],
)
def test_user_errors_are_one_line_with_the_closest_name(tmp_path, capsys, argv, words):
    argv = [a.replace("{d}", str(tmp_path / "o")) for a in argv]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anpyc: error:") and words in err[0], err


def test_a_config_key_typo_names_the_closest_key(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  epoch: 2\n")
    assert main(["run", "--method", "ewc", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key(s) 'epoch' (did you mean 'epochs'?)" in capsys.readouterr().err


def test_argument_errors_come_before_torch_is_imported(tmp_path):
    """`python -X importtime -m anpyc run --method nosuch --out D`: the one-line error, and no
    torch (nor numpy) among the modules imported before it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for argv in (["run", "--method", "nosuch"], ["run", "--method", "ewc", "--benchmark", "nosuch"],
                 ["compare", "--methods", "ewc,nosuch"], ["run", "--method", "ewc", "--lr", "-1"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "anpyc", *argv, "--out", str(tmp_path / "D")],
                              capture_output=True, text=True, env=env, timeout=120)
        lines = proc.stderr.splitlines()
        errors = [line for line in lines if line.startswith("anpyc: error:")]
        imported = [line.split("|")[-1].strip() for line in lines if line.startswith("import time:")]
        assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-500:]
        assert not [m for m in imported if m.split(".")[0] in ("torch", "numpy")], argv
        assert not (tmp_path / "D").exists()


def test_a_used_directory_says_how_to_go_on(tmp_path, capsys):
    """A finished run's directory: choose another --out or --overwrite; an unfinished one (killed,
    failed): --resume or --overwrite."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.yaml").write_text("method: finetune\n")
    argv = ["run", "--method", "finetune", "--benchmark", "blobs", "--tasks", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"holds an unfinished run (no metrics.json): continue it with `anpyc run --resume {out}`" in err
    assert "--overwrite" in err
    (out / "metrics.json").write_text("{}")
    assert main(argv) == 2
    assert "already holds a run; choose another --out or pass --overwrite" in capsys.readouterr().err


def test_argparse_errors_are_one_line_naming_the_command_help(capsys):
    for argv, words in ((["bench", "list", "extra"], "unrecognized arguments: extra (see `anpyc bench --help`)"),
                        (["compare", "--methods", "ewc"], "required: --out (see `anpyc compare --help`)"),
                        (["run", "--scenario", "nope"], "invalid choice: 'nope'")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("anpyc: error: ") and words in err, err


def test_method_list_cuts_descriptions_between_words_and_reads_roles_as_names(capsys):
    from anpyc.cli import _shortened

    title = "ANPyC: Adversarial Neural Pruning and synaptic Consolidation (Peng et al., IEEE TNNLS 2021, arXiv 1912.09091)"
    assert _shortened(title, 90) == "ANPyC: Adversarial Neural Pruning and synaptic Consolidation ..."
    assert _shortened("one two three four", 9) == "one two ..."
    assert main(["list", "methods"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    descriptions = [row.split("; --param")[0] for row in rows.values()]
    assert not any("`" in d or ":class:" in d for d in descriptions)
    assert rows["anpyc"].startswith("ANPyC: Adversarial Neural Pruning and synaptic Consolidation ...;")
    assert "from a ReplayBuffer" in rows["er"]
