"""Weight-space interpolation (WiSE-FT) between two tiny trained checkpoints."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import mmfuse
from mmfuse.data.tokenizer import tokenizer_from_json
from mmfuse.data.vocab import AnswerVocab
from mmfuse.evaluation.interpolate import (
    CheckpointMismatch,
    check_compatible,
    check_same_setup,
    config_from_checkpoint,
    interpolate,
    interpolate_state_dicts,
    parse_alphas,
)
from tests.conftest import REPO, TINY, jsonl_overrides, make_jsonl_dataset

_spec = importlib.util.spec_from_file_location("mmfuse_tools_interpolate", REPO / "tools" / "interpolate.py")
_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cli)  # type: ignore[union-attr]
cli_main = _cli.main


def _train(files: dict[str, Path], run_dir: Path, *extra: str) -> str:
    cfg = mmfuse.load_config(TINY, jsonl_overrides(files, run_dir) + ["trainer.logger=none", *extra])
    return mmfuse.train(cfg)["best_checkpoint"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A (seed 0), B (seed 1, same data) and C (another fusion dim), trained once for the module."""
    root = tmp_path_factory.mktemp("interp")
    files = make_jsonl_dataset(root / "data")
    a = _train(files, root / "a", "seed=0")
    b = _train(files, root / "b", "seed=1")
    # the tokenizer is a function of the training questions alone, so B's embedding rows match A's
    tokenizers = [torch.load(ckpt, weights_only=True)["mmfuse_tokenizer"] for ckpt in (a, b)]
    assert tokenizers[0] == tokenizers[1]
    c = _train(files, root / "c", "seed=0", "model.fusion.dim=16")
    return {"files": files, "root": root, "a": a, "b": b, "c": c}


def _tensors(out: Any) -> list[Tensor]:
    """Every tensor of a model output (dicts / tuples of tensors), in a fixed order."""
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _tensors(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for x in out for t in _tensors(x)]
    return []


def _test_batch(system: Any, ckpt: str) -> dict[str, Any]:
    cfg = config_from_checkpoint(ckpt)
    dm = mmfuse.build_datamodule(cfg, None, vocab=AnswerVocab(system.answers),
                                 tokenizer=tokenizer_from_json(system.tokenizer_json))
    dm.img_size = system.model.image_size
    return next(iter(dm.loader("test")))


def _outputs(system: Any, batch: dict[str, Any]) -> list[Tensor]:
    with torch.no_grad():
        return _tensors(system.eval().model(batch))


def _state(ckpt: str) -> dict[str, Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_seeds_give_different_weights_but_the_same_setup(runs: dict) -> None:
    a, b = (torch.load(runs[k], weights_only=True) for k in "ab")
    check_same_setup(a, b)  # same answers (deterministic from the data) and, here, the same tokenizer
    check_compatible(a["state_dict"], b["state_dict"])
    assert any(not torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


def test_endpoints_reproduce_both_models_exactly(runs: dict) -> None:
    sa, sb = _state(runs["a"]), _state(runs["b"])
    sys_a, sys_b = mmfuse.load_system(runs["a"]), mmfuse.load_system(runs["b"])
    batch = _test_batch(sys_a, runs["a"])
    ref_a, ref_b = _outputs(sys_a, batch), _outputs(sys_b, batch)
    assert not all(torch.equal(x, y) for x, y in zip(ref_a, ref_b))  # the two models really differ
    probe = mmfuse.load_system(runs["a"])  # A's architecture receives the interpolated weights
    for alpha, ref in ((0.0, ref_a), (1.0, ref_b)):
        state = interpolate_state_dicts(sa, sb, alpha)
        assert all(torch.equal(state[k], (sa if alpha == 0 else sb)[k]) for k in sa)
        probe.load_state_dict(state)
        out = _outputs(probe, batch)
        assert len(out) == len(ref) and all(torch.equal(x, y) for x, y in zip(out, ref))


def test_midpoint_is_the_average(runs: dict) -> None:
    sa, sb = _state(runs["a"]), _state(runs["b"])
    mid = interpolate_state_dicts(sa, sb, 0.5)
    assert list(mid) == list(sa)
    key = next(k for k, v in sa.items() if v.is_floating_point() and not torch.equal(v, sb[k]))
    assert mid[key].dtype == sa[key].dtype
    assert torch.equal(mid[key], ((sa[key].double() + sb[key].double()) / 2).to(sa[key].dtype))
    assert torch.allclose(interpolate_state_dicts(sa, sb, 2.0)[key], 2 * sb[key] - sa[key], atol=1e-6)  # extrapolation


def test_different_architecture_names_first_differing_parameter(runs: dict) -> None:
    sa, sc = _state(runs["a"]), _state(runs["c"])
    first = next(k for k in sa if k not in sc or sa[k].shape != sc[k].shape)
    with pytest.raises(CheckpointMismatch, match="not the same architecture") as err:
        check_compatible(sa, sc)
    assert repr(first) in str(err.value) and "A has shape" in str(err.value)
    with pytest.raises(CheckpointMismatch, match=r"'extra' is in B but missing from A"):
        check_compatible(sa, {**sa, "extra": torch.zeros(1)})
    with pytest.raises(CheckpointMismatch, match=r"'model\.x' is in A but missing from B"):
        check_compatible({"model.x": torch.zeros(2), **sa}, sa)
    ints = {"n": torch.tensor([1, 2])}
    with pytest.raises(CheckpointMismatch, match="non-floating tensor 'n'"):
        interpolate_state_dicts(ints, {"n": torch.tensor([1, 3])}, 0.5)


def test_different_answers_or_tokenizer_are_refused(runs: dict) -> None:
    a = torch.load(runs["a"], weights_only=True)
    answers = list(a["hyper_parameters"]["answers"])
    other = {**a, "hyper_parameters": {**a["hyper_parameters"], "answers": [answers[1], answers[0], *answers[2:]]}}
    expected = f"answer vocabularies differ at index 0: A has {answers[0]!r}, B has {answers[1]!r}"
    with pytest.raises(CheckpointMismatch, match=re.escape(expected)):
        check_same_setup(a, other)
    vocab = json.loads(a["mmfuse_tokenizer"])
    first, second = sorted(vocab["model"]["vocab"], key=vocab["model"]["vocab"].get)[5:7]
    v = vocab["model"]["vocab"]
    v[first], v[second] = v[second], v[first]
    with pytest.raises(CheckpointMismatch, match=re.escape(f"token {first!r} has id 5 in A but 6 in B")):
        check_same_setup(a, {**a, "mmfuse_tokenizer": json.dumps(vocab)})


@pytest.mark.filterwarnings("ignore::mmfuse.evaluation.leakage.LeakageWarning")  # tiny data: val images recur
def test_interpolate_removes_its_checkpoints_and_records_the_run(runs: dict, tmp_path: Path) -> None:
    cfg = config_from_checkpoint(runs["a"], ["eval.split=val"])
    rows = interpolate(runs["a"], runs["b"], [0.25], cfg, tmp_path / "out")
    assert [r["alpha"] for r in rows] == [0.25] and 0.0 <= rows[0]["accuracy"] <= 100.0
    assert not (tmp_path / "out" / "checkpoints").exists()  # temporary unless keep_checkpoints
    metrics = json.loads((tmp_path / "out" / "alpha_0.25" / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["accuracy"]["overall"] == rows[0]["accuracy"]
    saved = json.loads((tmp_path / "out" / "interpolation.json").read_text())
    assert saved["checkpoint_a"] == runs["a"] and saved["split"] == "val" and saved["rows"] == rows
    with pytest.raises(CheckpointMismatch, match=r"\[A = .*, B = .*\]"):
        interpolate(runs["a"], runs["c"], [0.5], cfg, tmp_path / "bad")


@pytest.mark.parametrize("text, expected", [
    ("0,0.1,...,1", [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
    ("0, 0.5, 1", [0.0, 0.5, 1.0]),
    ("1,0.75,...,0", [1.0, 0.75, 0.5, 0.25, 0.0]),
    ("-0.5,0,...,1.5", [-0.5, 0.0, 0.5, 1.0, 1.5]),
    ("0.3", [0.3]),
])
def test_parse_alphas(text: str, expected: list[float]) -> None:
    assert parse_alphas(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0,x,1", "'x' is not a finite number"), ("0,,1", "empty value"), ("0,0.3,...,1", "not reached"),
    ("0,...,1", "start,next,...,end"), ("0,0.5,0", "given twice"), ("nan", "not a finite number"),
])
def test_parse_alphas_errors_name_the_token(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_alphas(text)


def test_cli_end_to_end_matches_evaluate_at_both_ends(runs: dict, tmp_path: Path) -> None:
    out = tmp_path / "interp"
    proc = subprocess.run([sys.executable, "tools/interpolate.py", runs["a"], runs["b"], "--alphas", "0,0.5,1",
                           "--output", str(out), "--keep-checkpoints"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "(A)" in proc.stdout and "(B)" in proc.stdout and "interpolation.png" in proc.stdout
    result = json.loads((out / "interpolation.json").read_text())
    assert [r["alpha"] for r in result["rows"]] == [0.0, 0.5, 1.0] and result["split"] == "test"
    assert (out / "interpolation.png").stat().st_size > 0
    for row, key in ((result["rows"][0], "a"), (result["rows"][2], "b")):
        cfg = config_from_checkpoint(runs[key], [f"eval.checkpoint={runs[key]}", f"eval.output={tmp_path / key}"])
        direct = mmfuse.evaluate(cfg)["accuracy"]
        assert row["accuracy"] == direct["overall"] and row["ci95"] == direct["overall_ci95"]
        assert row["per_answer_type"] == direct["perAnswerType"]
    kept = mmfuse.load_system(str(out / "checkpoints" / "alpha_1.ckpt"))  # a loadable checkpoint, B's weights
    assert all(torch.equal(v, _state(runs["b"])[k]) for k, v in kept.state_dict().items() if k in _state(runs["b"]))


def test_cli_errors_exit_2_without_traceback(runs: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main([runs["a"], runs["c"], "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: not the same architecture: parameter 'model.") and "Traceback" not in err
    assert cli_main([runs["a"], str(tmp_path / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli_main([runs["a"], runs["b"], "--alphas", "0,zero"])
    assert exit_info.value.code == 2 and "'zero' is not a finite number" in capsys.readouterr().err
