"""The README as a new user reads it: its Python blocks are the example files the tests run,
and every ``anpyc`` command it shows is one the command line accepts as written (flags,
choices, names and the config they build; the placeholders ``...`` and ``[--out NEW]`` are
the README's own shorthand and are left out)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from anpyc import cli
from script_loader import load_script

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


BENCH_MARK = re.compile(r"<!-- bench_tables: (docs/benchmarks/[\w.-]+) -->\n")


def test_every_results_table_of_the_readme_is_bench_tables_output_on_its_committed_bench():
    """Each results table (a header with an ACC column) follows a marker naming its committed
    bench directory and is, line for line, ``python docs/scripts/bench_tables.py DIR``."""
    script = load_script(ROOT / "docs" / "scripts" / "bench_tables.py")
    marks = list(BENCH_MARK.finditer(README))
    assert len(marks) >= 3
    for mark in marks:
        expected = script.table(ROOT / mark.group(1))
        assert README[mark.end():].startswith(expected), f"README's table for {mark.group(1)} is not bench_tables.py's"
        bench = json.loads((ROOT / mark.group(1) / "bench.json").read_text(encoding="utf-8"))["bench"]
        assert script.recorded_commit(bench) and bench.get("clean_tree"), f"{mark.group(1)}: no clean tree at a recorded commit"
    covered = [m.end() for m in marks]  # a table follows its command line (a --methods list can be long)
    for header in re.finditer(r"^\| (?:group \| )?method \| ACC % \|", README, flags=re.M):
        assert any(0 <= header.start() - c < 1200 for c in covered), \
            f"a results table at offset {header.start()} has no bench_tables marker"


MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


def test_every_relative_link_of_the_readme_and_docs_names_a_committed_file():
    """A record moved or removed (e.g. a bench's rerun folder folded into its record) leaves no
    link behind pointing at nothing; links to the web are not followed."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = [f"{page.relative_to(ROOT)} -> {m.group(1)}"
              for page in pages for m in MARKDOWN_LINK.finditer(page.read_text(encoding="utf-8"))
              if "://" not in m.group(1) and not (page.parent / m.group(1)).exists()]
    assert not broken, broken


def test_every_committed_bench_records_its_commit_and_every_committed_run_its_decision_passes():
    """Issue #27: each ``docs/benchmarks/*/bench.json`` names the commit it ran at, on a clean
    tree, and every committed ``metrics.json`` counts the forward passes spent on decisions."""
    script = load_script(ROOT / "docs" / "scripts" / "bench_tables.py")
    benches = sorted((ROOT / "docs" / "benchmarks").rglob("bench.json"))
    assert benches
    for path in benches:
        bench = json.loads(path.read_text(encoding="utf-8"))["bench"]
        assert script.recorded_commit(bench) and bench.get("clean_tree"), f"{path.parent.name}: no clean tree at a commit"
    runs = sorted((ROOT / "docs").rglob("metrics.json"))
    assert len(runs) > 100
    missing = [str(p.relative_to(ROOT)) for p in runs if "decision_passes" not in json.loads(p.read_text(encoding="utf-8"))]
    assert not missing, f"runs without decision_passes: {missing[:5]}"


#: README commands that cannot run on this machine or in CI, and why; every other one runs below
NOT_RUN_HERE = {
    "data fetch cifar100": "downloads CIFAR-100 (no internet here; its reader is tested on generated archives)",
    "--device cuda": "needs a GPU",
    "--executor slurm": "needs a Slurm cluster (tests/experiments/test_executors.py fakes one)",
}
#: the one documented way to shrink a training command: the stream's own flags, and ``--epochs 1``
#: where the command sets no epochs of its own
SHRINK = ["--tasks", "2", "--subsample", "120", "--test-subsample", "60", "--val-subsample", "30"]


def _runnable() -> list[list[str]]:
    runnable = []
    for command in _commands():
        argv = shlex.split(command.replace(" [--out NEW]", ""))[1:]
        if any("..." in a for a in argv) or any(marker in command for marker in NOT_RUN_HERE):
            continue
        trains = argv[0] in ("run", "compare", "bench") and "--resume" not in argv and "--help" not in argv
        shrink = [] if "--stream-from" in argv else SHRINK  # your own data: its function sets tasks and sizes
        shrink = shrink + ([] if "--epochs" in argv else ["--epochs", "1"])  # its own epochs may carry retraining
        # a shrunk run is no protocol, so a tuned preset would not apply (and would say so)
        runnable.append(argv + (shrink if trains else []) + (["--no-presets"] if argv[0] in ("compare", "bench") else [])
                        + (["--allow-dirty"] if argv[0] == "bench" else []))  # a smoke run publishes nothing
    return runnable


def _lanes(commands: list[list[str]], n: int) -> list[list[list[str]]]:
    """The commands dealt in turn to ``n`` lanes that run side by side, each lane in README
    order; a command naming an earlier command's ``--out`` directory (``--resume runs/ft``,
    ``reproduce runs/ft``) goes to that command's lane, after it."""
    lanes: list[list[list[str]]] = [[] for _ in range(n)]
    lane_of_out: dict[str, int] = {}
    for i, argv in enumerate(commands):
        read = [lane_of_out[a] for a in argv if a in lane_of_out]
        lane = read[0] if read else i % n
        lanes[lane].append(argv)
        if "--out" in argv:
            lane_of_out[argv[argv.index("--out") + 1]] = lane
    return lanes


def test_lanes_keep_a_reader_after_the_run_it_reads():
    commands = [["data", "fetch", "mnist"], ["run", "--out", "runs/ft"], ["compare", "--out", "c"],
                ["run", "--resume", "runs/ft"], ["list"], ["reproduce", "runs/ft"]]
    lanes = _lanes(commands, 2)
    assert lanes == [[commands[0], commands[2], commands[4]], [commands[1], commands[3], commands[5]]]
    assert sorted(map(str, sum(lanes, []))) == sorted(map(str, commands))


@pytest.mark.slow
def test_every_readme_command_runs_shrunk_without_error_or_warning(tmp_path):
    """Every ``anpyc`` command of the README, shrunk by :data:`SHRINK` where it trains: exit code
    0 and no warning. ``data`` commands run first; the others in two lanes side by side (one
    torch thread each), a command reading another's output (``--resume runs/ft``) after it in
    its lane. Those it cannot run here are listed in :data:`NOT_RUN_HERE` with the reason."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "ANPYC_DATA": os.environ.get("ANPYC_DATA", str(Path.home() / ".cache" / "anpyc")),
           "PYTHONPATH": str(ROOT / "src")}
    commands = _runnable()
    assert len(commands) >= 18

    def run_lane(lane: list[list[str]]) -> list[tuple[list[str], subprocess.CompletedProcess]]:
        return [(argv, subprocess.run([sys.executable, "-m", "anpyc", *argv], cwd=tmp_path, capture_output=True,
                                      text=True, timeout=900, env=env)) for argv in lane]

    data = [argv for argv in commands if argv[0] == "data"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = run_lane(data) + sum(pool.map(run_lane, _lanes([a for a in commands if a[0] != "data"], 2)), [])
    assert len(done) == len(commands)
    for argv, proc in done:
        shown = " ".join(argv)
        assert proc.returncode == 0, f"anpyc {shown}: exit {proc.returncode}: {proc.stderr[-1500:]}"
        assert "WARNING" not in proc.stderr, f"anpyc {shown} warned: {proc.stderr[-1500:]}"



def _github_anchors(markdown: str) -> dict[str, str]:
    """``{anchor: heading line}`` as GitHub makes a page's anchors: lower case, punctuation
    dropped but ``-`` and ``_``, spaces to ``-``, a repeated one suffixed ``-1``, ``-2`` ...
    (a line of fenced code is no heading)."""
    seen: dict[str, int] = {}
    anchors = {}
    for block in re.split(r"^```.*?^```", markdown, flags=re.M | re.S):
        for line in re.findall(r"^#{1,6} .+$", block, flags=re.M):
            slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            anchors[f"{slug}-{seen[slug]}" if slug in seen else slug] = line
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_the_contents_line_links_every_section_of_the_readme():
    """The contents line at the top lands on each ``##`` section, in order (``#anpyc`` would be
    the title: the section ANPyC is ``#anpyc-1``); any other ``(#anchor)`` link on a heading."""
    anchors = _github_anchors(README)
    contents = next(line for line in README.splitlines() if line.startswith("Contents: "))
    targets = [anchors.get(a) for a in re.findall(r"\]\(#([^)\s]+)\)", contents)]
    assert targets == re.findall(r"^## .+$", re.sub(r"^```.*?^```", "", README, flags=re.M | re.S), flags=re.M)
    assert not [a for a in re.findall(r"\]\(#([^)\s]+)\)", README) if a not in anchors]
