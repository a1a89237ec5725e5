"""Committed files carry no machine paths: a result or doc that names `/work/...` or a home
directory cannot be rerun anywhere else, and leaks who ran it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|Users)/|[A-Za-z]:\\\\?Users\\\\?")
BINARY = {".png", ".jpg", ".pt", ".gz", ".npz", ".pdf"}


def _committed(*folders: str) -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", *folders], cwd=ROOT, capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout:
            return [ROOT / f for f in out.stdout.split("\0") if f]
    except (OSError, subprocess.SubprocessError):
        pass
    return [p for d in folders for p in (ROOT / d).rglob("*") if p.is_file()]  # no git: every file there


def test_pattern_finds_machine_paths_and_spares_relative_ones():
    for bad in ("--out /work/exp/p10", "/root/.cache/anpyc", '"/home/me/runs"', "C:\\Users\\me"):
        assert MACHINE_PATH.search(bad), bad
    for ok in ("--out bench-out/p10", "exp/long/b50", "~/.cache/anpyc", "src/anpyc/home/x", "$HOME/.cache"):
        assert not MACHINE_PATH.search(ok), ok


def test_no_committed_file_under_docs_or_src_holds_a_machine_path():
    files = [p for p in _committed("docs", "src", "examples", "README.md") if p.suffix not in BINARY and p.is_file()]
    assert files
    bad = []
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not bad, "machine paths in committed files (use paths relative to the repository):\n" + "\n".join(bad)
