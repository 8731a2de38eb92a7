"""The README's custom-fusion example runs as written, and both ways of using it train."""

import re
from pathlib import Path

import mmfuse
from mmfuse.fusion.base import FUSIONS
from tests.conftest import REPO, TINY, jsonl_overrides


def readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return next(b for b in blocks if marker in b)


def test_readme_custom_fusion_example(jsonl_data: dict, tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(mmfuse, "train", lambda cfg, fusion=None: calls.append((cfg, fusion)))
    monkeypatch.chdir(REPO)
    ns: dict = {}
    try:
        exec(readme_block("register_fusion"), ns)
        assert "gated_product" in mmfuse.list_fusions()
        (cfg, none), (_, built) = calls
        assert cfg.model.fusion.name == "gated_product" and none is None and built is not None
        monkeypatch.undo()
        # Now really train with it, tiny: by name, then as a built module.
        base = jsonl_overrides(jsonl_data, tmp_path / "a") + ["trainer.logger=none", "model.fusion.name=gated_product"]
        by_name = mmfuse.train(mmfuse.load_config(TINY, base))
        assert 0.0 <= by_name["test"]["test/acc"] <= 1.0
        fusion = ns["GatedProduct"]({"text": 32, "image": 32}, 32)
        cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "b") + ["trainer.logger=none"])
        by_module = mmfuse.train(cfg, fusion=fusion)
        assert 0.0 <= by_module["test"]["test/acc"] <= 1.0
        fusion = ns["GatedProduct"]({"text": 32, "image": 32}, 32)
        system = mmfuse.load_system(by_module["best_checkpoint"], fusion=fusion)
        assert type(system.model.fusion).__name__ == "GatedProduct"
    finally:
        FUSIONS._items.pop("gated_product", None)
