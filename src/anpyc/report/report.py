"""``anpyc report DIR``: a markdown report and a self-contained HTML page for a run or a
comparison directory, drawn from the files on disk only.

Writes ``DIR/report.md`` (images linked from ``DIR/plots/``), ``DIR/report.html`` (the same
content with every image embedded as a base64 data URI, so the page can be mailed or opened
anywhere) and the PNGs in ``DIR/plots/``. A plot whose data is absent (no importance
statistics, one method) is left out; a plot that fails is left out with a warning, and the
rest of the report is still written.

Example:
    >>> files = write_report("runs/cmp")  # doctest: +SKIP
    >>> files.html.name  # doctest: +SKIP
    'report.html'
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from anpyc import rundir
from anpyc.io import atomic_write_text
from anpyc.report import plots
from anpyc.report.html import Figure, Heading, Table, Text, render_html, render_markdown
from anpyc.report.load import Results, load_results
from anpyc.report.tables import (
    extras_table,
    guard_table,
    learning_table,
    matrix_table,
    mean_matrix,
    polarisation_table,
    summary_table,
)

log = logging.getLogger(__name__)


@dataclass
class ReportFiles:
    """Paths written by :func:`write_report`."""

    markdown: Path
    html: Path
    plots: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # plots not drawn, with the reason


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "method"


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "unknown"
    sha, dirty = commit.removesuffix("-dirty"), commit.endswith("-dirty")
    return sha[:12] + ("-dirty" if dirty else "")


def _describe(results: Results) -> str:
    """One paragraph: what was run, on what, with which seeds and budget."""
    first = next(iter(results.runs.values()))[0]
    cfg = first.config or results.compare.get("base", {}) or results.summary.get("config", {})
    stream, model, train = cfg.get("stream", {}), cfg.get("model", {}), cfg.get("train", {})
    parts = [f"Benchmark **{results.benchmark}**, {results.n_tasks} tasks"]
    if stream.get("subsample"):
        parts.append(f"{stream['subsample']} training examples per task")
    if model:
        hidden = model.get("hidden")
        parts.append(f"model {model.get('name', '?')} (hidden {hidden}, {model.get('head', '?')}-head)")
    if train:
        opt = " ".join(str(x) for x in (train.get("optimizer"), f"lr {train['lr']}" if "lr" in train else None) if x)
        parts.append(f"{train.get('epochs', '?')} epoch(s) per task" + (f", {opt}" if opt else ""))
    seeds = results.seeds
    if seeds:
        parts.append(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    text = "; ".join(parts) + "."
    meta = first.config.get("meta", {}) if first.config else {}
    if meta:
        bits = [f"anpyc {meta['anpyc']}" if meta.get("anpyc") else None,
                f"torch {meta['torch']}" if meta.get("torch") else None,
                f"commit {_short_commit(meta.get('git_commit'))}",
                f"run {meta['date']}" if meta.get("date") else None]
        text += " " + ", ".join(b for b in bits if b) + "."
    return text


def build_report(results: Results, plot_dir: Path) -> tuple[list, list[Path], list[str]]:
    """The report's blocks, drawing each plot into ``plot_dir``; plots skipped get a reason."""
    methods = results.methods
    title = (
        f"{methods[0]} on {results.benchmark}" if results.kind == "run"
        else f"{', '.join(methods)} on {results.benchmark}"
    )
    blocks: list = [Heading(f"anpyc report: {title}", 1), Text(_describe(results)), *_table_blocks(results)]
    figures, drawn, skipped = _draw_plots(results, plot_dir)
    if figures:
        blocks += [Heading("Plots", 2), *figures]
    blocks += _files_blocks(results)
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    blocks.append(Text(f"Report written {stamp} by `anpyc report {results.root}`."))
    return blocks, drawn, skipped


def _table_blocks(results: Results) -> list:
    """The summary table, then each table whose data the runs have (a run: its accuracy matrix)."""
    header, rows = summary_table(results)
    blocks: list = [
        Heading("Summary", 2),
        Text(
            ("Mean ± std over seeds. " if results.kind == "compare" else "")
            + "ACC: average test accuracy over all tasks after the last one; "
            "BWT: backward transfer (negative = forgetting); FWT: forward transfer vs a random "
            "network; val ACC: the same on the validation split (used for tuning)."
        ),
        Table(header, rows),
    ]
    learning = learning_table(results)
    if learning:
        blocks += [Heading("Learning accuracy (%)", 2),
                   Text("Test accuracy on each task right after learning it: where protecting old tasks costs plasticity."),
                   Table(*learning)]
    extras = extras_table(results)
    if extras:
        blocks += [Heading("Capacity and importance", 2), Table(*extras)]
    polarised = polarisation_table(results)
    if polarised:
        blocks += [Heading("Sparse and polarised synapses", 2),
                   Text("After the last task: the consolidated importance's kurtosis (heavy-tailed: few parameters hold "
                        "most of it) and the shared weights' distribution (zero and near-zero shares, bimodality of "
                        "|w|, kurtosis): what ANPyC's paper claims its synapses become."),
                   Table(*polarised)]
    guard = guard_table(results)
    if guard:
        blocks += [Heading("Pruning guard", 2),
                   Text("Validation accuracy of each task before pruning, pruned (not retrained) at the chosen keep share, "
                        "and after retraining; the keep share the schedule planned and the one the guard chose."),
                   Table(*guard)]
    if results.kind == "run":
        matrix = mean_matrix(results.runs[results.methods[0]])
        if matrix is not None:
            blocks += [
                Heading("Accuracy matrix (%)", 2),
                Text("Row i: after training task i; column j: test accuracy on task j."),
                Table(*matrix_table(matrix)),
            ]
    return blocks


def _draw_plots(results: Results, plot_dir: Path) -> tuple[list, list[Path], list[str]]:
    """``(figures, drawn, skipped)``: every plot drawn into ``plot_dir``, or why it was not."""
    drawn: list[Path] = []
    skipped: list[str] = []
    figures: list = []

    def draw(name: str, fn: Callable[[Path], Path | None], caption: str) -> None:
        try:
            out = fn(plot_dir / name)
        except Exception as exc:  # one broken plot must not cost the others
            log.warning("report: plot %s failed: %s: %s", name, type(exc).__name__, exc)
            skipped.append(f"{name}: failed ({type(exc).__name__}: {exc})")
            return
        if out is None:
            skipped.append(f"{name}: no data")
            return
        drawn.append(out)
        figures.append(Figure(out, caption))

    draw("avg_acc.png", lambda p: plots.plot_avg_acc(results, p),
         "Average accuracy on the tasks learned so far, against the number of tasks learned.")
    draw("task_acc.png", lambda p: plots.plot_task_accuracy(results, p),
         "Accuracy of each task across the sequence: how much of it survives later tasks.")
    for m in results.methods:
        draw(f"acc_matrix_{_slug(m)}.png", lambda p, m=m: plots.plot_acc_heatmap(results, m, p),
             f"Accuracy matrix of {m} (row: after task i; column: task j).")
    draw("importance.png", lambda p: plots.plot_importance(results, p),
         "Distribution of parameter importance (log scale) and its kurtosis after each task (first seed of each method).")
    draw("weights.png", lambda p: plots.plot_weight_distribution(results, p),
         "Magnitudes of the shared weights after the last task (log scale; the share exactly zero in the legend).")
    draw("free_capacity.png", lambda p: plots.plot_free_capacity(results, p),
         "Fraction of each layer's weights still free for later tasks.")
    draw("cost.png", lambda p: plots.plot_cost(results, p),
         "Wall time and memory per method (mean over seeds, ±1 std).")
    return figures, drawn, skipped


def _files_blocks(results: Results) -> list:
    """A "Files" section naming what the directory holds (none when it holds none of them)."""
    files = [("config.yaml", "resolved config"), ("metrics.json", "all metrics"), ("acc_matrix.csv", "accuracy matrix"),
             ("acc_curve.csv", "per-task log"), ("summary.json", "comparison summary"), ("bench.json", "suite summary"),
             ("compare.yaml", "comparison spec")]
    present = [f"`{f}` ({what})" for f, what in files if (results.root / f).exists()]
    if results.kind == "compare":  # beside these files, or in a record's runs/
        where = next(iter(results.runs.values()))[0].path.parent.parent.relative_to(results.root).as_posix()
        present.append(f"`{'' if where == '.' else where + '/'}<method>/seed_<s>/` (one run directory each)")
    if (results.root / rundir.TB).is_dir():
        present.append(f"`tb/` (TensorBoard: `tensorboard --logdir {results.root / 'tb'}`)")
    if not present:
        return []
    return [Heading("Files", 2), Text("In this directory: " + "; ".join(present) + ".")]


@rundir.releases_locks
def write_report(directory: str | Path) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``directory``.

    Raises :class:`anpyc.errors.OutputError` when the directory holds no results, or when
    another process is writing it (:mod:`anpyc.rundir`; the process that wrote the run may
    write its report: the lock is re-entrant).
    """
    if Path(directory).is_dir():  # first: a run still writing it fails here, with its pid
        rundir.acquire(directory)
    results = load_results(directory)
    root = results.root
    plot_dir = root / rundir.PLOTS
    if plot_dir.is_dir():  # the folder is the report's own: drop plots of an earlier report
        for old in plot_dir.glob("*.png"):
            old.unlink(missing_ok=True)
    blocks, drawn, skipped = build_report(results, plot_dir)
    md = atomic_write_text(root / rundir.REPORT_MD, render_markdown(blocks, root))
    html = atomic_write_text(root / rundir.REPORT_HTML, render_html(blocks))
    log.debug("report: %s, %s (%d plots)", md, html, len(drawn))  # the command line prints where it went
    return ReportFiles(md, html, drawn, skipped)


def write_report_safely(directory: str | Path) -> ReportFiles | None:
    """:func:`write_report` for the end of ``run``/``compare``: any failure is a warning,
    never an error, because the results are already on disk."""
    try:
        return write_report(directory)
    except Exception as exc:
        log.warning("could not write the report for %s (results are intact; retry with `anpyc report %s`): %s: %s",
                    directory, directory, type(exc).__name__, exc)
        return None
