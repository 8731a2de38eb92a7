"""Tasks on a real batch of the tiny jsonl data: losses, gradients, ITM negatives, answer types, generation targets."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import mmfuse
from mmfuse.config import load_config, to_container
from mmfuse.systems import SupervisedSystem
from mmfuse.tasks import most_common_answer, negative_index
from tests.conftest import TINY, jsonl_overrides, make_jsonl_dataset

ALL = ["vqa", "answer_generation", "itm", "answer_type"]


def build(tmp: Path, *extra: str) -> tuple[SupervisedSystem, Any]:
    files = make_jsonl_dataset(tmp / "data")
    cfg = load_config(TINY, jsonl_overrides(files, tmp / "run") + [f"tasks.active=[{','.join(ALL)}]", *extra])
    dm = mmfuse.build_datamodule(cfg, tmp / "run")
    dm.prepare()
    for split in ("train", "val", "test"):
        dm.split_records(split)
    torch.manual_seed(0)
    system = SupervisedSystem(to_container(cfg), dm.vocab.answers, text_vocab_size=len(dm.tokenizer),
                              pad_token_id=int(dm.tokenizer.pad_token_id or 0), answer_types=dm.types("answer_type"),
                              question_types=dm.types("question_type"), answer_words=dm.answer_words)
    dm.img_size = (32, 32)
    dm.setup("fit")
    return system, dm


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[SupervisedSystem, Any, dict[str, Any]]:
    system, dm = build(tmp_path_factory.mktemp("tasks"))
    batch = next(iter(dm.train_dataloader()))
    return system, dm, batch


def test_batch_and_task_context(setup) -> None:
    system, dm, batch = setup
    assert list(system.tasks) == ALL and list(system.model.heads) == ALL
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.uint8  # 4 images x 4 questions
    assert sorted(batch["image_index"].tolist()) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert len(batch["question_id"]) == 16 and batch["targets"]["vqa"].shape == (16, len(dm.vocab))
    assert system.tasks["answer_type"].classes == ["other", "yes/no"]
    assert system.model.heads["answer_type"].num_answers == 2 and system.model.heads["itm"].num_answers == 1


@pytest.mark.parametrize("name", ALL)
def test_each_task_loss_is_finite_and_reaches_its_head_and_the_fusion(setup, name: str) -> None:
    system, _, batch = setup
    system.train()
    system.zero_grad(set_to_none=True)
    out = system.model(batch)
    result = system.tasks[name].run(system.model.heads[name], out, batch, system.model, False)
    assert result.loss is not None and result.loss.ndim == 0 and math.isfinite(float(result.loss.detach()))
    assert float(result.loss.detach()) > 0
    result.loss.backward()
    for n, p in system.model.named_parameters():
        if n.startswith(f"heads.{name}."):
            assert p.grad is not None, n  # every parameter of its own head is used
    head_norm = sum(float(p.grad.norm()) for n, p in system.model.named_parameters()
                    if n.startswith(f"heads.{name}.") and p.grad is not None)
    fusion_norm = sum(float(p.grad.norm()) for n, p in system.model.fusion.named_parameters() if p.grad is not None)
    enc_norm = sum(float(p.grad.norm()) for p in system.model.encoders.parameters() if p.grad is not None)
    assert head_norm > 0 and fusion_norm > 0 and enc_norm > 0
    for n, p in system.model.named_parameters():
        if n.startswith("heads.") and not n.startswith(f"heads.{name}."):
            assert p.grad is None or float(p.grad.abs().max()) == 0.0, n  # other tasks' heads untouched
    system.zero_grad(set_to_none=True)


def test_predictions_and_correct_shapes(setup) -> None:
    system, dm, batch = setup
    system.eval()
    with torch.no_grad():
        out = system.model(batch)
        res = {n: t.run(system.model.heads[n], out, batch, system.model, True) for n, t in system.tasks.items()}
    assert len(res["vqa"].predictions) == 16 and set(res["vqa"].predictions) <= set(dm.vocab.answers)
    assert res["vqa"].predictions == [dm.vocab.answers[i] for i in out["vqa"].argmax(-1).tolist()]
    gen = res["answer_generation"].predictions
    assert len(gen) == 16 and all(isinstance(p, str) for p in gen)
    assert res["itm"].predictions is None and res["itm"].correct.shape == (32,)  # positives and negatives
    assert res["answer_type"].predictions is None and res["answer_type"].correct.shape == (16,)
    for n in ("itm", "answer_type"):
        assert set(res[n].correct.unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------------------------------- itm
def test_negative_index_hand_values() -> None:
    index = torch.tensor([0, 0, 1, 2, 2, 1])
    # shift 1 + b mod (U-1) with U=3: 1,2,1,2,1,2
    assert negative_index(index, 3).tolist() == [1, 2, 2, 1, 0, 0]
    assert negative_index(torch.tensor([0, 1, 1, 0]), 2).tolist() == [1, 0, 0, 1]  # two images: always the other
    assert negative_index(torch.tensor([0, 0, 0]), 1).tolist() == [0, 0, 0]  # one image: no negative exists


def test_negative_index_never_own_image() -> None:
    g = torch.Generator().manual_seed(0)
    for u in range(2, 9):
        for n in (1, 5, 17, 64):
            index = torch.randint(0, u, (n,), generator=g)
            neg = negative_index(index, u)
            assert bool((neg != index).all()) and int(neg.min()) >= 0 and int(neg.max()) < u, (u, n)
    # along a batch of questions of one image, the negatives go round every other image
    assert sorted(set(negative_index(torch.zeros(12, dtype=torch.long), 4).tolist())) == [1, 2, 3]


def test_itm_loss_is_bce_over_positives_and_negatives(setup) -> None:
    system, _, batch = setup
    system.eval()  # dropout off: the head gives the same logits twice
    model, head = system.model, system.model.heads["itm"]
    with torch.no_grad():
        out = model(batch)
        res = system.tasks["itm"].run(head, out, batch, model, False)
        neg = negative_index(batch["image_index"], 4)
        assert bool((neg != batch["image_index"]).all())
        pos_logits = head(out["fusion"])[:, 0]
        neg_logits = head(model.fuse(out["text"], out["image"], neg))[:, 0]
        # independently: the whole model on a batch whose questions are paired with the negative images
        swapped = model({**batch, "image": batch["image"][neg], "image_index": torch.arange(16)})["itm"][:, 0]
    torch.testing.assert_close(neg_logits, swapped, atol=1e-5, rtol=1e-5)
    p_pos, p_neg = torch.sigmoid(pos_logits.double()), torch.sigmoid(neg_logits.double())
    manual = -(torch.log(p_pos).sum() + torch.log(1 - p_neg).sum()) / 32
    assert float(res.loss) == pytest.approx(float(manual), rel=1e-5)
    logits = torch.cat([pos_logits, neg_logits])
    labels = torch.cat([torch.ones(16), torch.zeros(16)])
    assert res.correct.tolist() == ((logits > 0).float() == labels).float().tolist()


@pytest.mark.parametrize("fusion", mmfuse.list_fusions())
def test_itm_negatives_equal_the_model_on_swapped_images_for_every_fusion(tmp_path: Path, fusion: str) -> None:
    """``model.fuse`` with another image row gives what the whole model gives on that pairing, whichever
    way the fusion gathers per-question image rows (``accepts_index`` or not)."""
    system, dm = build(tmp_path, f"model.fusion.name={fusion}")
    batch = next(iter(dm.train_dataloader()))
    system.eval()
    model = system.model
    with torch.no_grad():
        out = model(batch)
        neg = negative_index(batch["image_index"], batch["image"].shape[0])
        via_fuse = model.heads["itm"](model.fuse(out["text"], out["image"], neg))[:, 0]
        swapped = model({**batch, "image": batch["image"][neg], "image_index": torch.arange(16)})["itm"][:, 0]
        res = system.tasks["itm"].run(model.heads["itm"], out, batch, model, False)
    torch.testing.assert_close(via_fuse, swapped, atol=1e-5, rtol=1e-5)
    labels = torch.cat([torch.ones(16), torch.zeros(16)])
    expected = F.binary_cross_entropy_with_logits(torch.cat([out["itm"][:, 0], via_fuse]), labels)
    assert res.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_itm_single_image_batch_has_no_loss(setup) -> None:
    system, dm, _ = setup
    ds = dm.datasets["train"]
    rows = [i for i, r in enumerate(ds.image_rows) if r == ds.image_rows[0]]
    assert len(rows) == 4
    one = ds[rows]
    assert one["image"].shape[0] == 1
    out = system.model(one)
    res = system.tasks["itm"].run(system.model.heads["itm"], out, one, system.model, False)
    assert res.loss is None and res.correct is None
    # the other tasks still learn from it
    assert system.tasks["vqa"].run(system.model.heads["vqa"], out, one, system.model, False).loss is not None


# ----------------------------------------------------------------------------------- answer_type
def test_answer_type_ignores_rows_with_unknown_type(setup) -> None:
    system, _, batch = setup
    system.eval()
    task, head = system.tasks["answer_type"], system.model.heads["answer_type"]
    types = list(batch["answer_type"])
    edited = [None if i % 3 == 0 else ("number" if i % 3 == 1 else t) for i, t in enumerate(types)]  # number: unknown
    b2 = {**batch, "answer_type": edited}
    with torch.no_grad():
        out = system.model(b2)
        res = task.run(head, out, b2, system.model, False)
    keep = [i for i in range(16) if i % 3 == 2]
    target = torch.tensor([["other", "yes/no"].index(types[i]) for i in keep])
    logits = out["answer_type"][keep]
    assert float(res.loss) == pytest.approx(float(F.cross_entropy(logits, target)), rel=1e-6)
    assert res.correct.tolist() == (logits.argmax(-1) == target).float().tolist()
    assert task.targets(b2, torch.device("cpu")).tolist() == [
        -100 if i % 3 != 2 else ["other", "yes/no"].index(types[i]) for i in range(16)]
    none = {**batch, "answer_type": [None] * 16}
    assert task.run(head, out, none, system.model, False).loss is None


# ----------------------------------------------------------------------------- answer_generation
def test_most_common_answer_ties_go_to_the_first_given() -> None:
    assert most_common_answer(["no", "yes", "yes", "no"]) == "no"
    assert most_common_answer(["yes", "no", "no", "yes"]) == "yes"
    assert most_common_answer(["red", "blue", "blue"]) == "blue"
    assert most_common_answer(["No.", "yes", "no"]) == "no"  # counted after normalisation
    assert most_common_answer(["circle", "Two", "2", "circle", "two"]) == "2"  # 3 x "2" vs 2 x "circle"
    assert most_common_answer(["green"]) == "green"


def test_generation_targets_most_common_and_random(tmp_path: Path, setup) -> None:
    system, _, _ = setup
    fake = {"answers": [["red", "blue", "blue", "green"], ["yes", "no"], ["circle"] * 3]}
    task = system.tasks["answer_generation"]
    assert task.spec["target"] == "most_common"
    assert task.target_answers(fake, [0, 1, 2]) == ["blue", "yes", "circle"]
    assert task.target_answers(fake, [2, 0]) == ["circle", "blue"]

    rsys, _ = build(tmp_path, "tasks.answer_generation.target=random")
    rtask = rsys.tasks["answer_generation"]
    drawn = [rtask.target_answers(fake, [0, 1, 2]) for _ in range(60)]
    rng = random.Random(0)  # the task's generator is seeded with 0
    assert drawn == [[rng.choice(fake["answers"][i]) for i in (0, 1, 2)] for _ in range(60)]
    firsts = [d[0] for d in drawn]
    assert set(firsts) == {"red", "blue", "green"} and {d[1] for d in drawn} == {"yes", "no"}
    assert all(d[2] == "circle" for d in drawn)
    assert 0.3 < firsts.count("blue") / 60 < 0.75  # 2 of 4 annotators


def test_generation_random_target_trains(tmp_path: Path) -> None:
    system, dm = build(tmp_path, "tasks.answer_generation.target=random")
    batch = next(iter(dm.train_dataloader()))
    out = system.model(batch)
    res = system.tasks["answer_generation"].run(system.model.heads["answer_generation"], out, batch, system.model, True)
    assert math.isfinite(float(res.loss.detach())) and len(res.predictions) == 16
    assert all(isinstance(p, str) for p in res.predictions)


def test_unlabelled_rows_give_no_loss_but_predictions(setup) -> None:
    system, _, batch = setup
    system.eval()
    empty = {**batch, "answers": [[] for _ in range(16)], "targets": {"vqa": torch.zeros_like(batch["targets"]["vqa"])}}
    with torch.no_grad():
        out = system.model(empty)
        for name in ("vqa", "answer_generation"):
            res = system.tasks[name].run(system.model.heads[name], out, empty, system.model, True)
            assert res.loss is None, name
            assert len(res.predictions) == 16 and all(isinstance(p, str) for p in res.predictions), name


def test_partly_labelled_batch_learns_from_labelled_rows_only(setup) -> None:
    """Generation and vqa losses on a batch with some unlabelled rows equal those of the labelled rows alone."""
    system, dm, _ = setup
    system.eval()
    ds = dm.datasets["train"]
    idx = list(range(16))  # questions of the first 4 images (4 each)
    labelled = [i for i in idx if i % 2 == 0]
    full = ds[idx]
    full["answers"] = [a if i % 2 == 0 else [] for i, a in zip(idx, full["answers"])]
    sub = ds[labelled]
    with torch.no_grad():
        out_full, out_sub = system.model(full), system.model(sub)
        for name in ("vqa", "answer_generation"):
            head = system.model.heads[name]
            lf = system.tasks[name].run(head, out_full, full, system.model, False).loss
            ls = system.tasks[name].run(head, out_sub, sub, system.model, False).loss
            assert float(lf) == pytest.approx(float(ls), rel=1e-4), name
