import json

import pytest

from anpyc import presets
from anpyc.cli import main
from anpyc.errors import ConfigError


def test_save_then_load(tmp_path):
    path = presets.save_preset("si", "blobs", {"lam": 3.0}, {"seeds": [0]}, directory=tmp_path)
    assert path.name == "si-blobs.yaml"
    assert presets.load_preset("si-blobs", tmp_path)["method_params"] == {"lam": 3.0}
    assert presets.find_preset("si", "blobs", tmp_path)["method"] == "si"
    assert presets.find_preset("mas", "blobs", tmp_path) is None
    with pytest.raises(ConfigError, match="unknown preset"):
        presets.load_preset("nope", tmp_path)


def test_presets_are_package_data():
    assert presets.PRESET_DIR.name == "presets" and presets.PRESET_DIR.parent.name == "anpyc"


def test_run_applies_preset_and_param_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path / "p")
    presets.save_preset("si", "blobs", {"lam": 3.0, "xi": 0.5}, {})
    base = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "100", "--hidden", "8", "--quiet", "--no-report"]
    assert main(["run", "--method", "si", "--preset", "si-blobs", "--param", "xi=0.2", "--out", str(tmp_path / "r"), *base]) == 0
    import yaml

    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["method_params"] == {"lam": 3.0, "xi": 0.2}
    assert main(["run", "--method", "mas", "--preset", "si-blobs", "--out", str(tmp_path / "r2"), *base]) == 2
    assert main(["compare", "--methods", "si,finetune", "--presets", "--out", str(tmp_path / "c"), *base]) == 0
    cmp = yaml.safe_load((tmp_path / "c" / "compare.yaml").read_text())
    assert cmp["params"]["si"] == {"lam": 3.0, "xi": 0.5}
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    for key in ("forgetting", "bwt", "time_ratio_finetune"):
        assert summary["methods"]["si"][key]["mean"] is not None
    assert len(summary["methods"]["si"]["importance_kurtosis"]) == 2  # one per task
