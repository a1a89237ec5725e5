"""The README as a new user reads it: its Python blocks are the example files the tests run,
and every ``anpyc`` command it shows is one the command line accepts as written (flags,
choices, names and the config they build; the placeholders ``...`` and ``[--out NEW]`` are
the README's own shorthand and are left out)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from anpyc import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    """Every ``anpyc ...`` command of the README's bash blocks, continuation lines joined,
    comments dropped."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("anpyc "):
                commands.append(line)
    return commands


@pytest.mark.parametrize("example", ["own_loop.py", "own_data.py"])
def test_readme_shows_the_example_files_whole(example):
    text = (ROOT / "examples" / example).read_text(encoding="utf-8")
    assert text in [b for b in _blocks("python")], f"README's block for examples/{example} differs from the file"


def test_readme_commands_parse_and_build_their_config(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples/own_data.py:make and the presets path are relative to the clone
    commands = _commands()
    assert len(commands) >= 15 and any("--stream-from" in c for c in commands)
    checked = 0
    for command in commands:
        if "..." in command or "[" in command:
            continue  # shorthand: "any option", "...same flags..."
        argv = shlex.split(command)[1:]
        if argv[-1] == "--help" or argv[0] in ("--version", "list", "data", "reproduce") or "--resume" in argv:
            continue  # run below, or need a finished run
        args = cli.build_parser().parse_args(argv)
        if args.command == "run":
            cli.check_name("method", args.method or "anpyc")
        if args.command in ("run", "compare"):
            cfg = cli._config_from_args(args, getattr(args, "method", None))
            assert cfg.train.epochs > 0
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("argv", [["--version"], ["list", "methods"], ["list", "streams"], ["run", "--help"],
                                  ["data", "list"]])
def test_readme_quick_commands_run_without_a_warning(argv, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "anpyc", *argv], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "ANPYC_DATA": str(tmp_path), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "warn" not in proc.stderr.lower() and proc.stdout.strip()


def test_own_data_example_runs_as_shown(tmp_path, monkeypatch):
    """`python examples/own_data.py`: a run and a two-seed comparison on your own data, with reports."""
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "own_data.py")], capture_output=True, text=True,
                          timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
                                            "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING" not in proc.stderr
    assert (tmp_path / "runs/own-ewc/report.html").is_file() and (tmp_path / "runs/own-cmp/report.html").is_file()
