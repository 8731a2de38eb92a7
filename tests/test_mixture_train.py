"""Training on several datasets at once (``data.mixture``): per-dataset tasks and metrics, per-dataset test
outputs, sampling strategies, and the config errors of a malformed mixture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import mmfuse
from mmfuse.config import ConfigError, load_config
from mmfuse.data.datamodule import dataset_specs
from tests.conftest import TINY, make_jsonl_dataset

pytestmark = pytest.mark.filterwarnings("ignore::mmfuse.evaluation.leakage.LeakageWarning")


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("mix")
    return {"a": make_jsonl_dataset(root / "a", seed=0), "b": make_jsonl_dataset(root / "b", n_images=8, seed=1)}


def entry(name: str, files: dict[str, Path], tasks: list[str], **extra: str) -> str:
    """One mixture entry in OmegaConf's flow syntax (paths quoted)."""
    fields = [f"name: {name}", "source: jsonl", f"root: '{files['train'].parent}'",
              *(f"{s}: '{files[s]}'" for s in ("train", "val", "test")), f"tasks: [{', '.join(tasks)}]",
              *(f"{k}: {v}" for k, v in extra.items())]
    return "{" + ", ".join(fields) + "}"


def mixture(two: dict, a_tasks=("vqa",), b_tasks=("vqa", "answer_type"), **extra_a: str) -> str:
    return f"data.mixture=[{entry('a', two['a'], list(a_tasks), **extra_a)}, {entry('b', two['b'], list(b_tasks))}]"


def write_experiment(path: Path, two: dict, sampling: str) -> Path:
    """The README's layout: a YAML experiment file with tasks and the mixture."""
    lines = ["tasks: {active: [vqa, answer_type]}", "data:", f"  sampling: {sampling}", "  sampling_temperature: 2.0",
             "  augment: []", "  mixture:"]
    for name, tasks in (("a", ["vqa"]), ("b", ["vqa", "answer_type"])):
        f = two[name]
        lines += [f"    - name: {name}", "      source: jsonl", f"      root: '{f['train'].parent}'",
                  *(f"      {s}: '{f[s]}'" for s in ("train", "val", "test")), f"      tasks: [{', '.join(tasks)}]"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("sampling", ["round_robin", "temperature"])
def test_two_datasets_train_with_their_own_tasks(two: dict, tmp_path: Path, sampling: str) -> None:
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "mix.yaml", two, sampling)
    cfg = mmfuse.load_config([TINY, exp], [f"run_dir={run}", "trainer.logger=csv"])
    assert [e.name for e in cfg.data.mixture] == ["a", "b"] and cfg.data.sampling == sampling
    result = mmfuse.train(cfg)

    with (run / "logs" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    header = set(rows[0])
    for key in ("val/a/vqa/acc", "val/b/vqa/acc", "val/b/answer_type/acc", "val/vqa/acc", "val/answer_type/acc",
                "test/a/vqa/acc", "test/b/vqa/acc", "test/b/answer_type/acc", "weight/vqa", "weight/answer_type"):
        assert key in header, key
        values = [float(r[key]) for r in rows if r.get(key)]
        assert values and all(0.0 <= v <= 1.0 or key.startswith("weight/") for v in values), key
    # dataset a does not train (nor score) answer_type
    assert not any(k.startswith(("val/a/answer_type", "test/a/answer_type", "train/a/answer_type")) for k in header)

    # 12 + 8 training images, batches of 4 images: 3 batches of a and 2 of b in the epoch
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 5
    assert result["num_questions"] == {"train": 48 + 32, "val": 12 + 8, "test": 12 + 8}
    assert set(result["test_tasks"]) == {"vqa", "answer_type"}  # per-dataset keys are not tasks
    a_acc, b_acc = result["test"]["test/a/vqa/acc"], result["test"]["test/b/vqa/acc"]
    assert result["test"]["test/vqa/acc"] == pytest.approx((12 * a_acc + 8 * b_acc) / 20, abs=1e-6)
    assert result["test"]["test/answer_type/acc"] == pytest.approx(result["test"]["test/b/answer_type/acc"], abs=1e-6)

    for name, n, qids, acc in (("a", 12, range(60, 72), a_acc), ("b", 8, range(40, 48), b_acc)):
        ev = json.loads((run / "eval_test" / name / "metrics.json").read_text())
        assert ev["num_questions"] == n and ev["dataset"] == name and ev["split"] == "test"
        assert ev["accuracy"]["overall"] == round(100 * acc, 2)
        preds = json.loads((run / "eval_test" / name / "predictions.json").read_text())
        assert sorted(p["question_id"] for p in preds) == list(qids)
        assert all(set(p) == {"question_id", "answer"} for p in preds)
    assert result["test_accuracy"] == json.loads((run / "eval_test" / "a" / "metrics.json").read_text())["accuracy"]
    assert not (run / "eval_test" / "metrics.json").exists()


def test_mixture_overrides_in_dotlist_syntax(two: dict) -> None:
    cfg = load_config(TINY, ["tasks.active=[vqa,answer_type]", mixture(two), "data.sampling=round_robin"])
    specs = dataset_specs(cfg.data)
    assert [(s.name, s.source, s.tasks) for s in specs] == [("a", "jsonl", ("vqa",)),
                                                            ("b", "jsonl", ("vqa", "answer_type"))]
    assert specs[1].train == str(two["b"]["train"]) and specs[1].root == str(two["b"]["train"].parent)
    cfg = load_config(TINY, ["tasks.active=[vqa,answer_type]", mixture(two, val_fraction="0.3")])
    assert dataset_specs(cfg.data)[0].val_fraction == 0.3 and dataset_specs(cfg.data)[1].val_fraction == 0.1


@pytest.mark.parametrize("bad, key", [
    (lambda two: mixture(two, extra_key="1"), r"data\.mixture\[0\]\.extra_key"),
    (lambda two: f"data.mixture=[{entry('a', two['a'], ['vqa'])}, {entry('a', two['b'], ['vqa'])}]",
     r"data\.mixture.*repeats dataset name.*'a'"),
    (lambda two: mixture(two, b_tasks=("vqa", "itm")), r"data\.mixture\[1\]\.tasks.*'itm'.*tasks\.active"),
    (lambda two: "data.mixture=[{name: a}]", r"data\.mixture\[0\]\.source.*required"),
    (lambda two: "data.mixture=[{source: jsonl}]", r"data\.mixture\[0\]\.name.*required"),
    (lambda two: "data.mixture=[{name: 'a b', source: jsonl}]", r"data\.mixture\[0\]\.name"),
    (lambda two: "data.mixture=[jsonl]", r"data\.mixture\[0\].*mapping"),
    (lambda two: "data.sampling=uniform", r"data\.sampling.*round_robin"),
])
def test_malformed_mixture_is_a_config_error_naming_the_key(two: dict, bad, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(TINY, ["tasks.active=[vqa,answer_type]", bad(two)])


def test_unknown_mixture_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.mixture\[0\]\.source.*valid choices: .*jsonl"):
        load_config(TINY, ["data.mixture=[{name: a, source: nope}]"])
    with pytest.raises(ConfigError, match=r"data\.mixture\[0\]\.val_fraction"):
        load_config(TINY, ["data.mixture=[{name: a, source: jsonl, val_fraction: abc}]"])


def test_mixture_val_fraction_zero_is_kept(two: dict) -> None:
    cfg = load_config(TINY, ["tasks.active=[vqa,answer_type]", mixture(two, val_fraction="0.0")])
    assert dataset_specs(cfg.data)[0].val_fraction == 0.0


def test_evaluate_scores_each_dataset_of_a_mixture_checkpoint(two: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    exp = write_experiment(tmp_path / "mix.yaml", two, "proportional")
    result = mmfuse.train(mmfuse.load_config([TINY, exp], [f"run_dir={run}", "trainer.logger=none"]))
    out = tmp_path / "ev"
    cfg = mmfuse.load_config([TINY, exp], [f"eval.checkpoint={result['best_checkpoint']}", f"eval.output={out}",
                                           "trainer.logger=none"])
    ev = mmfuse.evaluate(cfg)
    assert set(ev["datasets"]) == {"a", "b"} and not (out / "metrics.json").exists()
    for name in ("a", "b"):  # the same answers as the test stage of training, dataset by dataset
        assert (json.loads((out / name / "predictions.json").read_text())
                == json.loads((run / "eval_test" / name / "predictions.json").read_text()))
        assert ev["datasets"][name] == json.loads((out / name / "metrics.json").read_text())["accuracy"]["overall"]
