import numpy as np
import pytest
from report_fakes import make_compare_dir

from anpyc.report import plots
from anpyc.report.load import Results, RunData, load_results

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


# the split-mnist-class bench's rows: every base method and its +inference/+density-replay variants
BASES = ["anpyc", "anpyc-masks", "density", "derpp", "er", "ewc", "finetune", "hat", "joint", "lwf", "mas",
         "online-ewc", "packnet", "si", "slda", "er-200", "derpp-200"]
BENCH = BASES + [f"{b}{v}" for v in ("+inference", "+density-replay") for b in BASES]


def test_methods_drawn_together_never_look_alike():
    styles = plots.method_styles(BENCH)
    assert len({(s.color, s.linestyle, s.marker) for s in styles.values()}) == len(BENCH)
    assert len({(s.color, s.hatch) for s in styles.values()}) == len(BENCH)
    assert len({styles[b].color for b in BASES}) == len(BASES)
    assert styles["ewc+inference"].color == styles["ewc"].color == plots.method_color("ewc")
    assert plots.method_styles(["x", "x+inference"])["x+inference"].linestyle == styles["ewc+inference"].linestyle


def _drawn_figure(monkeypatch):
    """Make ``_save`` keep the figure it is given instead of writing it."""
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or path)
    return figs


def test_lines_of_a_comparison_are_told_apart(monkeypatch, tmp_path):
    figs = _drawn_figure(monkeypatch)
    summary = {"benchmark": "split-mnist", "methods": {m: {"avg_acc_curve": [0.9, 0.8]} for m in BENCH}}
    plots.plot_avg_acc_curves(summary, tmp_path / "avg_acc.png")
    from matplotlib.colors import to_hex

    lines = figs[0].axes[0].get_lines()
    looks = {(to_hex(ln.get_color()), ln.get_linestyle(), ln.get_marker()) for ln in lines}
    assert len(lines) == len(BENCH) and len(looks) == len(BENCH)


def test_bars_of_variants_are_told_apart(monkeypatch, tmp_path):
    figs = _drawn_figure(monkeypatch)
    runs = {m: [RunData(tmp_path, m, 0, {"time_s": 2.0, "eval_time_s": 0.5, "peak_rss_mb": 300.0})] for m in BENCH}
    plots.plot_cost(Results(tmp_path, "compare", runs), tmp_path / "cost.png")
    bars = figs[0].axes[1].patches
    assert len(bars) == len(BENCH) and len({(b.get_facecolor(), b.get_hatch()) for b in bars}) == len(BENCH)


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


def test_a_long_legend_goes_beside_the_axes_and_a_short_one_stays_inside():
    """A bench's 40 methods in the legend would cover the curves: it goes right of the axes."""
    plt = plots._pyplot()
    for count, inside in ((5, True), (40, False)):
        fig, ax = plt.subplots()
        for k in range(count):
            ax.plot([0, 1], [k, k], label=f"m{k}")
        plots._legend(ax, count)
        fig.canvas.draw()
        legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert (legend.x0 >= axes.x1) is not inside, count
        plt.close(fig)
