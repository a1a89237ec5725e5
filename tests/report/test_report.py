import base64
import json
import logging
import re
import shutil
import subprocess

import pytest
from report_fakes import METHODS, make_compare_dir, make_record_dir

from anpyc.errors import OutputError
from anpyc.report import plots
from anpyc.report.load import load_results
from anpyc.report.report import _files_blocks, write_report, write_report_safely

PNG = b"\x89PNG\r\n\x1a\n"


def _check_files(root, files, expected_plots):
    assert files.markdown == root / "report.md" and files.html == root / "report.html"
    assert sorted(p.name for p in files.plots) == sorted(expected_plots)
    for p in files.plots:
        assert p.parent == root / "plots" and p.read_bytes().startswith(PNG) and p.stat().st_size > 5000
    md = files.markdown.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == sorted(f"plots/{n}" for n in expected_plots)
    page = files.html.read_text()
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == len(expected_plots)
    assert sorted(base64.b64decode(u) for u in uris) == sorted(p.read_bytes() for p in files.plots)
    return md, page


def test_run_report_has_every_file(run_dir):
    files = write_report(run_dir)
    expected = ["avg_acc.png", "task_acc.png", "acc_matrix_anpyc.png", "importance.png", "weights.png", "free_capacity.png", "cost.png"]
    md, page = _check_files(run_dir, files, expected)
    assert files.skipped == []
    assert "| anpyc | 1 |" in md and "## Accuracy matrix (%)" in md
    assert "commit 0123456789ab-dirty" in md
    assert "<table>" in page and "anpyc report: anpyc on blobs" in page


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory):
    """The hand-made four-method comparison and its report, written once for this module."""
    root = make_compare_dir(tmp_path_factory.mktemp("report") / "cmp")
    return root, write_report(root)


def test_compare_report_has_every_file(compare_report):
    compare_dir, files = compare_report
    expected = ["avg_acc.png", "task_acc.png", "importance.png", "weights.png", "free_capacity.png", "cost.png"]
    expected += [f"acc_matrix_{m}.png" for m in METHODS]
    md, _ = _check_files(compare_dir, files, expected)
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| ") and " | 2 | " in line]
    assert rows == list(METHODS)  # one summary row per method, comparison order
    assert "Mean ± std over seeds" in md and "## Capacity and importance" in md


def test_the_files_section_says_where_the_runs_lie(tmp_path):
    compare_files = _files_blocks(load_results(make_compare_dir(tmp_path / "cmp")))[-1].text
    record_files = _files_blocks(load_results(make_record_dir(tmp_path / "record")))[-1].text
    assert "`summary.json`" in compare_files and "`<method>/seed_<s>/`" in compare_files
    assert "`bench.json` (suite summary)" in record_files and "`runs/<method>/seed_<s>/`" in record_files


def test_single_method_without_extras_skips_those_plots(tmp_path):
    root = make_compare_dir(tmp_path / "cmp", ("finetune",))
    stale = root / "plots" / "acc_matrix_gone.png"  # from an earlier report
    stale.parent.mkdir()
    stale.write_bytes(PNG)
    files = write_report(root)
    assert {p.name for p in files.plots} == {"avg_acc.png", "task_acc.png", "acc_matrix_finetune.png", "cost.png"}
    assert sorted(files.skipped) == ["free_capacity.png: no data", "importance.png: no data", "weights.png: no data"]
    assert "Capacity and importance" not in files.markdown.read_text()
    assert not stale.exists()


def test_minimal_metrics_still_report(tmp_path):
    """A run with only the accuracy matrix (older or foreign metrics.json) still reports."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"method": "x", "acc_matrix": [[0.5, None], [0.4, 0.6]]}))
    files = write_report(run)
    assert {p.name for p in files.plots} == {"avg_acc.png", "task_acc.png", "acc_matrix_x.png"}
    assert "cost.png: no data" in files.skipped


def test_a_failing_plot_costs_only_itself(tmp_path, monkeypatch, caplog):
    def boom(results, path):
        raise RuntimeError("kaput")

    monkeypatch.setattr(plots, "plot_task_accuracy", boom)
    root = make_compare_dir(tmp_path / "cmp", ("finetune",))
    with caplog.at_level(logging.WARNING, logger="anpyc.report"):
        files = write_report(root)
    assert {p.name for p in files.plots} == {"avg_acc.png", "acc_matrix_finetune.png", "cost.png"}
    assert (root / "report.html").exists() and (root / "report.md").exists()
    assert any("kaput" in s for s in files.skipped) and "kaput" in caplog.text


def test_safe_variant_never_raises(tmp_path, caplog):
    with pytest.raises(OutputError):
        write_report(tmp_path)
    with caplog.at_level(logging.WARNING, logger="anpyc.report"):
        assert write_report_safely(tmp_path) is None
    assert "could not write the report" in caplog.text


_CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.tagName))), true);
window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'anpyc-check';
  const right = Math.max(...Array.from(document.querySelectorAll('table, figure, img, pre, h1'))
    .map(e => e.getBoundingClientRect().right));
  out.textContent = JSON.stringify({
    images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    errors: window.__errors, viewport: window.innerWidth,
    scroll: document.documentElement.scrollWidth, right: right});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make test installs it as root)")
def test_html_opens_in_headless_chromium(compare_report, tmp_path):
    _, files = compare_report
    # the page has no script of its own; a copy gets one that reports what the browser decoded
    page = files.html.read_text().replace("</body>", _CHECK_SCRIPT + "</body>")
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    cmd = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="anpyc-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium rc={proc.returncode}: {proc.stderr[-2000:]}"
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["errors"] == []
    assert len(check["images"]) == len(files.plots) == 10
    for complete, width, height in check["images"]:
        assert complete and width > 300 and height > 200
    # a 1280 px window: nothing scrolls sideways and every table and figure ends inside it
    assert check["viewport"] == 1280, check
    assert check["scroll"] <= check["viewport"] and check["right"] <= check["viewport"], check
