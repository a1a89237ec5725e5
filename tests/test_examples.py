import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_own_loop_example_runs_and_keeps_old_tasks():
    spec = importlib.util.spec_from_file_location("own_loop", ROOT / "examples" / "own_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    right_after: list[float] = []
    acc = module.main(tasks=3, epochs=10, right_after=right_after)
    assert len(acc) == 3 and min(acc) > 0.45  # 4 classes: chance is 0.25
    assert acc == right_after  # hard protection: nothing forgotten


def test_readme_example_is_the_example_file():
    readme = (ROOT / "README.md").read_text()
    assert "examples/own_loop.py" in readme and "method.eval_context(model, task.id)" in readme
