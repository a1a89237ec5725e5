import numpy as np
import pytest
from report_fakes import make_compare_dir

from anpyc.report import plots
from anpyc.report.load import load_results

PNG = b"\x89PNG\r\n\x1a\n"
DRAW = {
    "avg_acc": plots.plot_avg_acc,
    "task_acc": plots.plot_task_accuracy,
    "importance": plots.plot_importance,
    "free_capacity": plots.plot_free_capacity,
    "cost": plots.plot_cost,
    "heatmap": lambda res, p: plots.plot_acc_heatmap(res, "anpyc", p),
}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every plot of the hand-made four-method comparison, drawn once for this module."""
    root = tmp_path_factory.mktemp("plots")
    res = load_results(make_compare_dir(root / "cmp"))
    return {name: draw(res, root / f"{name}.png") for name, draw in DRAW.items()}


def _pixels(path):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    return (img * 255).round().astype(int).reshape(-1, 3)


def _has_colour(path, hex_colour, tol=6):
    rgb = np.array([int(hex_colour[i: i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(_pixels(path) - rgb).max(1) <= tol).sum() > 20)


def test_method_colours_fixed_and_distinct():
    known = ["anpyc", "packnet", "ewc", "mas", "si", "lwf", "finetune", "joint"]
    colours = [plots.method_color(m) for m in known]
    assert len(set(colours)) == len(colours)
    assert plots.method_color("ANPyC") == plots.method_color("anpyc")
    assert plots.method_color("my-method") == plots.method_color("my-method")
    assert plots.method_color("my-method") not in colours


@pytest.mark.parametrize("name", list(DRAW))
def test_each_plot_is_a_png(drawn, name):
    data = drawn[name].read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000
    assert _pixels(drawn[name]).std() > 10  # not a blank canvas


@pytest.mark.parametrize("name", ["avg_acc", "cost", "importance", "free_capacity"])
def test_anpyc_has_its_colour_in_every_plot(drawn, name):
    assert _has_colour(drawn[name], plots.method_color("anpyc"))


def test_a_plot_shows_only_its_methods(tmp_path):
    res = load_results(make_compare_dir(tmp_path / "cmp", ("ewc",)))
    out = plots.plot_avg_acc(res, tmp_path / "ewc.png")
    assert _has_colour(out, plots.method_color("ewc")) and not _has_colour(out, plots.method_color("anpyc"))


def test_missing_or_malformed_extras_draw_nothing(tmp_path):
    res = load_results(make_compare_dir(tmp_path / "cmp", ("finetune",)))
    assert plots.plot_importance(res, tmp_path / "i.png") is None
    assert plots.plot_free_capacity(res, tmp_path / "f.png") is None
    assert not (tmp_path / "i.png").exists() and not (tmp_path / "f.png").exists()
    bad = res.runs["finetune"][0].metrics
    bad["importance_stats"] = [{"task": 0, "hist_edges": [0, 1], "hist_counts": [1, 2]}, "junk", None]
    bad["free_fraction"] = {"fc": [None, None], "other": "junk"}
    assert plots.plot_importance(res, tmp_path / "i.png") is None
    assert plots.plot_free_capacity(res, tmp_path / "f.png") is None
    assert plots.plot_acc_heatmap(res, "nope", tmp_path / "h.png") is None
