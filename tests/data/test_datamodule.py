from pathlib import Path

import torch

from mmfuse.config import load_config
from mmfuse.data.batching import GroupedBatchSampler
from mmfuse.data.datamodule import carve_validation
from mmfuse.data.schema import QARecord
from mmfuse.data.transforms import augment, resize_uint8
from mmfuse.data.vocab import AnswerVocab
from mmfuse.runner import build_datamodule
from tests.conftest import TINY, jsonl_overrides


def rec(qid: int, image: str, answers: tuple[str, ...]) -> QARecord:
    return QARecord(question_id=qid, image=image, question="q?", answers=answers)


def test_carve_validation_is_deterministic_and_by_image() -> None:
    records = [rec(i, f"img{i // 3}", ("yes",)) for i in range(600)]
    train, val = carve_validation(records, 0.1)
    train2, val2 = carve_validation(list(reversed(records)), 0.1)
    assert {r.question_id for r in val} == {r.question_id for r in val2}  # order-independent
    assert not {r.image_key for r in train} & {r.image_key for r in val}  # no image in both
    assert len(train) + len(val) == 600 and 0.04 < len(val) / 600 < 0.2


def test_vocab_order_and_soft_targets() -> None:
    records = [rec(0, "a", ("Yes",) * 10), rec(1, "a", ("no",) * 6 + ("two",) * 2 + ("2",) + ("3",)),
               rec(2, "b", ("no",))]
    vocab = AnswerVocab.from_records(records, top_k=3, min_count=1)
    # counts after normalisation: yes 10, no 7, 2 3 ("two" -> "2"), 3 1
    assert vocab.answers == ["yes", "no", "2"]
    t1 = dict(vocab.soft_target(records[1]))
    assert t1 == {vocab.index("no"): 1.0, vocab.index("2"): 0.9}  # 6 and 3 of 10 annotators
    assert dict(vocab.soft_target(records[2])) == {vocab.index("no"): 1.0}  # single answer: exact match
    assert AnswerVocab.from_records(records, min_count=5).answers == ["yes", "no"]


def test_vocab_save_load(tmp_path: Path) -> None:
    v = AnswerVocab(["b", "a"])
    v.save(tmp_path / "answers.json")
    assert AnswerVocab.load(tmp_path / "answers.json").answers == ["b", "a"]


def test_grouped_sampler_covers_every_question_once_with_fixed_length() -> None:
    groups = [list(range(s, s + n)) for s, n in ((0, 3), (3, 5), (8, 1), (9, 4), (13, 2))]
    s = GroupedBatchSampler(groups, batch_size=6, shuffle=True, seed=1)
    for _ in range(3):
        batches = list(s)
        assert len(batches) == len(s)
        flat = sorted(q for b in batches for q in b)
        assert flat == list(range(15))
        for b in batches:  # whole images only
            assert all(set(g) <= set(b) or not set(g) & set(b) for g in groups)
    plain = GroupedBatchSampler(groups, batch_size=4, shuffle=False, group_by_image=False)
    assert [len(b) for b in plain] == [4, 4, 4, 3]


def test_transforms() -> None:
    img = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = augment(img, ["hflip", "vflip", "rot90"], torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.dtype == torch.uint8
    for a, b in zip(img, out):  # each output image is a flip/rotation of its input: same pixels
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    assert resize_uint8(img, (4, 4)).shape == (4, 3, 4, 4)
    one = img[0]
    assert resize_uint8(one, (8, 8)) is one  # already the right size: no copy


def test_datamodule_batches_map_questions_to_their_images(jsonl_data: dict, tmp_path: Path) -> None:
    cfg = load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run"))
    dm = build_datamodule(cfg, tmp_path / "run")
    dm.prepare()
    dm.img_size = (32, 32)
    assert (tmp_path / "run" / "answers.json").is_file() and (tmp_path / "run" / "tokenizer").is_dir()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    B = len(batch["question_id"])
    assert batch["text"]["input_ids"].shape[0] == B and batch["targets"]["vqa"].shape == (B, len(dm.vocab))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[0] < B  # each image once
    ds = dm.datasets["train"]
    by_id = {r.question_id: i for i, r in enumerate(ds.records)}
    for b, qid in enumerate(batch["question_id"]):
        expected = ds.images[ds.image_rows[by_id[qid]]]
        assert torch.equal(batch["image"][batch["image_index"][b]], expected)
        # the soft target marks the question's own answer
        assert batch["targets"]["vqa"][b, dm.vocab.index(batch["answers"][b][0])] == 1.0


def test_trained_tokenizer_is_the_same_in_every_process() -> None:
    """Two processes (two runs, or two ranks of a DDP run) train the same WordPiece vocabulary."""
    import subprocess
    import sys

    code = ("from mmfuse.data.tokenizer import train_wordpiece; "
            "qs = [f'is there a {c} {s} in the {w}?' for c in ('red', 'blue', 'teal') for s in ('circle', 'box') "
            "for w in ('image', 'picture', 'scene')] + ['what color is it?', 'purplish?']; "
            "print(train_wordpiece(qs, 40).backend_tokenizer.to_str())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(outs) == 1


def test_wordpiece_vocab_exact() -> None:
    from mmfuse.data.tokenizer import SPECIALS, train_wordpiece, wordpiece_vocab

    vocab = wordpiece_vocab(["Is it red?", "is it blue", "red"], vocab_size=30)
    chars = ["?", "b", "d", "e", "i", "l", "r", "s", "t", "u"]
    alphabet = chars + ["##" + c for c in chars]
    # words by frequency, ties alphabetical: is, it, red (2 each), then blue (1); "?" is already in the alphabet
    assert list(vocab) == [*SPECIALS, *alphabet, "is", "it", "red", "blue"]
    assert list(wordpiece_vocab(["Is it red?", "is it blue", "red"], vocab_size=27)) == [*SPECIALS, *alphabet,
                                                                                         "is", "it"]
    tok = train_wordpiece(["Is it red?", "is it blue", "red"], vocab_size=27)
    assert tok.convert_ids_to_tokens(tok("red bird")["input_ids"]) == ["[CLS]", "r", "##e", "##d", "b", "##i",
                                                                       "##r", "##d", "[SEP]"]
