from pathlib import Path

from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]


def _forgetting(module, method_name):
    right_after: list[float] = []
    acc = module.main(tasks=3, epochs=10, right_after=right_after, method_name=method_name)
    assert len(acc) == 3 and min(right_after) > 0.45  # every task learnt (4 classes: chance is 0.25)
    return sum(a - b for a, b in zip(right_after, acc)) / len(acc)


def test_own_loop_example_runs_and_protects_old_tasks():
    module = load_script(ROOT / "examples" / "own_loop.py")
    assert _forgetting(module, "anpyc") < _forgetting(module, "finetune")  # consolidation protects old tasks
    assert _forgetting(module, "anpyc-masks") == 0.0  # hard protection and per-task masks: nothing forgotten


def test_readme_example_is_the_example_file():
    readme = (ROOT / "README.md").read_text()
    assert "examples/own_loop.py" in readme and "method.eval_context(model, task.id)" in readme
