"""``tools/evaluate.py --corrupt ... --missing ...`` as a user runs it, on a tiny trained run: one accuracy per level
and per missing modality in metrics.json, level 0 equal to the plain evaluation, the printed table, the report's
figure; bad specs refused in one line; the missing inputs keep a trained model finite."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import mmfuse
from mmfuse.cli import run_tool as cli_run_tool
from mmfuse.data.corrupt import BatchCorruption
from mmfuse.data.tokenizer import tokenizer_from_json
from tests.conftest import REPO, TINY, jsonl_overrides, make_jsonl_dataset, run_tool


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run (one epoch on 12 images) and its training-time test metrics."""
    tmp = tmp_path_factory.mktemp("robust")
    files = make_jsonl_dataset(tmp / "data")
    cfg = mmfuse.load_config(TINY, [*jsonl_overrides(files, tmp / "run"), "trainer.logger=none"])
    return {**mmfuse.train(cfg), "tmp": tmp}


def test_corrupt_and_missing_end_to_end(trained: dict) -> None:
    out_dir = trained["tmp"] / "robust_eval"
    out = run_tool("tools/evaluate.py", "--checkpoint", trained["best_checkpoint"], "--output", str(out_dir),
                   "--corrupt", "image:gaussian_noise", "--corrupt", "text:word_drop", "--levels", "0.5,0",
                   "--missing", "image", "--missing", "text", "--report")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    clean = metrics["accuracy"]["overall"]
    assert clean == trained["test_accuracy"]["overall"]  # the plain evaluation, as training's test stage scored it
    blocks = metrics["robustness"]
    assert list(blocks) == ["image:gaussian_noise", "text:word_drop"]
    for block in blocks.values():
        assert block["levels"] == [0.0, 0.5] and len(block["accuracy"]) == 2
        assert block["accuracy"][0] == clean  # level 0 went through the corruption path: exactly the identity
        assert block["clean_accuracy"] == clean
        assert block["relative_robustness"] == pytest.approx(sum(block["accuracy"]) / 2, abs=1e-12)
        assert set(block["per_answer_type"]) == {"other", "yes/no"}
        assert all(len(v) == 2 for v in block["per_answer_type"].values())
        assert block["per_answer_type"]["yes/no"][0] == metrics["accuracy"]["perAnswerType"]["yes/no"]
    assert set(metrics["missing"]) == {"image", "text"}
    for m in metrics["missing"].values():
        assert 0.0 <= m["accuracy"] <= 100.0 and m["drop"] == round(clean - m["accuracy"], 2)
    assert metrics["robustness_convention"]["seed"] == 0  # eval.bootstrap.seed
    assert "image:gaussian_noise" in out and "RR" in out and "missing image:" in out and "missing text:" in out
    html = (out_dir / "report" / "index.html").read_text()
    assert 'src="robustness.png"' in html and (out_dir / "report" / "robustness.png").stat().st_size > 0


def _tool():
    spec = importlib.util.spec_from_file_location("evaluate_tool", REPO / "tools" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("args", "expected"), [
    (["--corrupt", "image:blur"], "image:gaussian_noise, image:occlusion, text:word_drop, text:typo"),
    (["--corrupt", "image:occlusion", "--levels", "0,1.5"], "1.5 is out of range; a corruption level lies in [0, 1]"),
    (["--missing", "audio"], "--missing 'audio': unknown modality; choose from image, text"),
])
def test_bad_specs_are_one_line_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture) -> None:
    # refused before the checkpoint is even looked for
    code = cli_run_tool(_tool().main, ["--checkpoint", "nope.ckpt", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("config error: ") and expected in err


def test_missing_inputs_keep_the_model_finite(trained: dict) -> None:
    system = mmfuse.load_system(trained["best_checkpoint"])
    system.eval()
    tok = tokenizer_from_json(system.tokenizer_json)
    ids = tok(["what color is the shape?"])["input_ids"][0]
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    fill = tuple(round(255 * float(m)) for m in system.model.mean)
    for spec in ("missing:text", "missing:image"):
        text = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
        batch = {"text": text, "image": images, "image_index": torch.tensor([0]), "question_id": [7],
                 "question": ["what color is the shape?"]}
        BatchCorruption(spec, 1.0, 0, {7: "a.png"}, tok, 40, fill)(batch)
        if spec == "missing:text":
            assert batch["text"]["input_ids"].tolist() == [[tok.cls_token_id, tok.sep_token_id]]
        else:
            assert (batch["image"] == torch.tensor(fill, dtype=torch.uint8).view(1, 3, 1, 1)).all()
        with torch.no_grad():
            logits = system.model(batch)["vqa"]
        assert torch.isfinite(logits).all(), spec
