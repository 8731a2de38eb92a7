"""The GPU path, checked on CPU: bf16 mixed precision (Lightning's CPU autocast) and torch.compile."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import mmfuse
from mmfuse.config import load_config
from tests.conftest import TINY, jsonl_overrides


def tiny(data: dict, run: Path, *extra: str):
    return load_config(TINY, [*jsonl_overrides(data, run), "trainer.logger=none", *extra])


def test_bf16_mixed_trains_on_cpu_with_fp32_weights(jsonl_data: dict, tmp_path: Path) -> None:
    result = mmfuse.train(tiny(jsonl_data, tmp_path / "bf16", "trainer.precision=bf16-mixed"))
    assert math.isfinite(result["test"]["test/loss"]) and 0.0 <= result["test_accuracy"]["overall"] <= 100.0
    system = mmfuse.load_system(result["best_checkpoint"]).eval()
    assert all(p.dtype == torch.float32 for p in system.parameters())  # mixed precision: fp32 master weights
    batch = {"text": {"input_ids": torch.randint(5, 50, (3, 5)), "attention_mask": torch.ones(3, 5, dtype=torch.long)},
             "image": torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert system.model(batch)["vqa"].dtype == torch.bfloat16


def _compiled_run(data: dict, run: Path, backend: str) -> dict:
    return mmfuse.train(tiny(data, run, "trainer.compile=true", f"trainer.compile_backend={backend}"))


def test_compiled_model_trains_and_its_checkpoint_is_a_plain_one(jsonl_data: dict, tmp_path: Path) -> None:
    """aot_eager: Dynamo traces the model and AOTAutograd its backward, without generating kernels (fast)."""
    compiled = _compiled_run(jsonl_data, tmp_path / "compiled", "aot_eager")
    plain = mmfuse.train(tiny(jsonl_data, tmp_path / "plain"))
    keys = [set(torch.load(r["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"])
            for r in (compiled, plain)]
    assert keys[0] == keys[1] and not any("_orig_mod" in k for k in keys[0])
    # the compiled forward computes what the plain one does, to float rounding
    system = mmfuse.load_system(compiled["best_checkpoint"]).eval()
    batch = {"text": {"input_ids": torch.randint(5, 50, (3, 5)), "attention_mask": torch.ones(3, 5, dtype=torch.long)},
             "image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), "image_index": torch.tensor([0, 1, 1])}
    with torch.no_grad():
        expected = system.model(batch)["vqa"]
        system.model.compile(backend="aot_eager")
        torch.testing.assert_close(system.model(batch)["vqa"], expected, rtol=1e-4, atol=1e-5)
    evaluated = mmfuse.evaluate(load_config(TINY, [*jsonl_overrides(jsonl_data, tmp_path / "ev"),
                                                   f"eval.checkpoint={compiled['best_checkpoint']}"]))
    assert evaluated["accuracy"]["overall"] == compiled["test_accuracy"]["overall"]


@pytest.mark.slow
def test_inductor_compiles_and_trains_on_cpu(jsonl_data: dict, tmp_path: Path) -> None:
    """The default backend generates C++ kernels on CPU (about a minute per shape); run with -m slow."""
    result = _compiled_run(jsonl_data, tmp_path / "inductor", "inductor")
    assert math.isfinite(result["test"]["test/loss"])
