"""tools/soc_reference_cnn.py: the reference model outside mmfuse's pipeline trains on the generator's files and
prints the validation accuracy of the asked question types, one line per epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run_tool

from mmfuse.data.sort_of_clevr_files import write_sort_of_clevr


@pytest.mark.parametrize("flags", [
    [], ["--pool", "mean", "--no-film", "--question", "words", "--mmfuse-image"],
    ["--mmfuse-text", "1", "--text-embed-std", "1.0", "--mmfuse-head", "--no-q-head", "--text-pool", "max"],
    ["--mmfuse-model", "configs/experiments/sort_of_clevr.yaml", "model.fusion.name=film", "model.image.depth=0",
     "model.text.config.hidden_size=32", "model.image.embed_dim=32", "model.fusion.dim=32"],
])
def test_reference_cnn_prints_each_epochs_accuracy_per_type(tmp_path: Path, flags: list[str]) -> None:
    root = tmp_path / "soc"
    write_sort_of_clevr(root, {"train": 4, "val": 2, "test": 1}, seed=3)
    out = run_tool("tools/soc_reference_cnn.py", "--root", str(root), "--types", "horizontal", "count",
                   "--epochs", "2", *flags)
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert [line.split(":")[0] for line in lines] == ["epoch 0", "epoch 1"]
    for line in lines:
        accs = dict(re.findall(r"'(\w+)': ([\d.]+)", line))
        assert set(accs) == {"horizontal", "count"} and all(0 <= float(v) <= 100 for v in accs.values())
