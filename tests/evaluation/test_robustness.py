"""Corruptions of a modality (mmfuse.data.corrupt) and the robustness numbers (mmfuse.evaluation.robustness, the
ablation's columns): level 0 is the identity, level > 0 corrupts by about the amount asked, every draw is seeded
per image / question whatever the batch, and the areas are the trapezoids of hand-made curves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmfuse.data.corrupt import (
    BatchCorruption,
    _edit,
    gaussian_noise,
    missing_images,
    occlusion,
    stable_seed,
    typo,
    word_drop,
)
from mmfuse.data.tokenizer import train_wordpiece
from mmfuse.errors import ConfigError
from mmfuse.evaluation.ablation import csv_rows, format_markdown, summarize_robustness
from mmfuse.evaluation.results import summarize
from mmfuse.evaluation.robustness import (
    RobustnessRequest,
    effective_robustness,
    format_robustness,
    level_accuracy,
    parse_levels,
    relative_robustness,
    robustness_results,
)


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random uint8 images with no pixel equal to the fill colour used below (200)."""
    return torch.randint(0, 150, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# -- images ------------------------------------------------------------------------------------------------------
def test_gaussian_noise_identity_at_zero_and_sigma_is_level_times_255() -> None:
    grey = torch.full((1, 3, 64, 64), 128, dtype=torch.uint8)
    assert gaussian_noise(grey, 0.0, [1]) is grey
    diff = gaussian_noise(grey, 0.1, [1]).float() - 128  # 12,288 draws, clipping out of reach (5 sigma)
    assert diff.std().item() == pytest.approx(25.5, rel=0.02) and abs(diff.mean().item()) < 0.5
    assert gaussian_noise(grey, 1.0, [1]).min() == 0 and gaussian_noise(grey, 1.0, [1]).max() == 255  # clipped
    assert not torch.equal(gaussian_noise(grey, 0.01, [1]), grey)
    assert torch.equal(gaussian_noise(grey, 0.1, [1]), gaussian_noise(grey, 0.1, [1]))
    assert not torch.equal(gaussian_noise(grey, 0.1, [1]), gaussian_noise(grey, 0.1, [2]))


def test_gaussian_noise_on_clips_draws_every_frame() -> None:
    clip = torch.full((1, 2, 3, 16, 16), 128, dtype=torch.uint8)
    out = gaussian_noise(clip, 0.1, [5])
    assert out.shape == clip.shape and not torch.equal(out[0, 0], out[0, 1])


def test_occlusion_covers_level_of_the_area_in_the_fill_colour() -> None:
    img = images(1, 64)
    assert occlusion(img, 0.0, [3], (200, 200, 200)) is img
    for level, expected in ((0.25, 0.25), (0.3, 35 * 35 / 64**2), (1.0, 1.0), (1e-6, 1 / 64**2)):
        out = occlusion(img, level, [3], (200, 200, 200))
        changed = (out != img).any(1)  # [1,H,W]
        assert changed.float().mean().item() == expected, level
        assert (out[:, :, changed[0]] == 200).all()  # filled, and nothing else touched
    assert abs(35 * 35 / 64**2 - 0.3) < 0.001
    at = [(occlusion(img, 0.25, [s], (200, 200, 200)) != img).any(1)[0].nonzero().min(0).values.tolist()
          for s in range(6)]
    assert len({tuple(a) for a in at}) > 1  # the position is drawn per seed


def test_occlusion_of_a_clip_is_the_same_patch_on_every_frame() -> None:
    clip = images(2, 32).reshape(1, 2, 3, 32, 32)
    out = occlusion(clip, 0.25, [9], (200, 200, 200))
    assert torch.equal((out[0, 0] != clip[0, 0]).any(0), (out[0, 1] != clip[0, 1]).any(0))
    assert (out[0, 0] != clip[0, 0]).any(0).sum() == 16 * 16


def test_missing_images_are_the_fill_colour() -> None:
    out = missing_images(images(2, 8), (124, 116, 104))
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 8, 8)
    assert out[:, 0].unique().tolist() == [124] and out[:, 2].unique().tolist() == [104]


# -- text --------------------------------------------------------------------------------------------------------
WORDS = " ".join(f"w{i}x" for i in range(2000))


def test_word_drop_identity_rate_and_nesting() -> None:
    odd = "  what   colour is\tit? "
    assert word_drop(odd, 0.0, 1) == odd  # level 0: untouched, whitespace included
    assert word_drop("what colour is it?", 1.0, 1) == ""
    kept = {lv: word_drop(WORDS, lv, 4).split() for lv in (0.2, 0.3, 0.5)}
    assert abs(1 - len(kept[0.3]) / 2000 - 0.3) < 0.03
    assert set(kept[0.5]) <= set(kept[0.3]) <= set(kept[0.2])  # one growing corruption over the levels
    assert word_drop(WORDS, 0.3, 4) == word_drop(WORDS, 0.3, 4) != word_drop(WORDS, 0.3, 5)


@pytest.mark.parametrize(("word", "kind", "where", "letter", "expected"), [
    ("shape?", 0, 0.0, 0, "hsape?"),      # swap the first two (different) letters
    ("shape?", 1, 0.99, 0, "shap?"),      # delete the last letter, the punctuation stays
    ("shape?", 2, 0.0, 0, "ashape?"),     # insert "a" first
    ("shape?", 3, 0.0, 0, "ahape?"),      # substitute: the letters other than "s", the first is "a"
    ("(ok)", 3, 0.5, 10, "(ol)"),         # only the letters between punctuation are edited
    ("ll", 0, 0.0, 0, "al"),              # a swap that changes nothing becomes a substitution
    ("a", 1, 0.0, 0, "b"),                # deleting a one-letter word becomes a substitution
    ("?", 2, 0.0, 0, "?"),                # no letter: untouched
])
def test_typo_edits(word: str, kind: int, where: float, letter: int, expected: str) -> None:
    assert _edit(word, kind, where, letter) == expected


def test_typo_identity_rate_and_one_edit_per_word() -> None:
    assert typo("what colour is it?", 0.0, 1) == "what colour is it?"
    words = WORDS.split()
    for level in (0.4, 1.0):
        out = typo(WORDS, level, 2).split()
        changed = [(a, b) for a, b in zip(words, out) if a != b]
        assert len(out) == 2000 and abs(len(changed) / 2000 - level) < 0.04
        for a, b in changed:  # one edit: a length change of one, or at most two differing positions
            assert abs(len(a) - len(b)) == 1 or sum(x != y for x, y in zip(a, b)) in (1, 2)
    assert typo(WORDS, 0.4, 2) == typo(WORDS, 0.4, 2) != typo(WORDS, 0.4, 3)


# -- whole batches -----------------------------------------------------------------------------------------------
TOKENIZER = train_wordpiece(["what colour is the shape?", "is there a red circle?"], 200)
KEYS = {1: "a.png", 2: "a.png", 3: "b.png", 4: "c.png"}


def batch(qids: list[int], rows: dict[str, torch.Tensor]) -> dict:
    order = list(rows)
    questions = [f"what colour is the shape {q}?" for q in qids]
    enc = TOKENIZER(questions, padding=True, return_tensors="pt")
    return {"text": {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
            "image": torch.stack([rows[k] for k in order]),
            "image_index": torch.tensor([order.index(KEYS[q]) for q in qids]),
            "question_id": qids, "question": questions}


def corrupt(spec: str, level: float, b: dict) -> dict:
    return BatchCorruption(spec, level, 0, KEYS, TOKENIZER, 40, (200, 200, 200))(b)


def test_level_zero_leaves_the_batch_untouched() -> None:
    imgs = images(3)
    b = batch([1, 3], {"a.png": imgs[0], "b.png": imgs[1]})
    before = dict(b)
    for spec in ("image:gaussian_noise", "image:occlusion", "text:word_drop", "text:typo"):
        assert corrupt(spec, 0.0, b) is b and all(b[k] is before[k] for k in before), spec


def test_draws_do_not_depend_on_the_batch() -> None:
    imgs = images(3)
    first = batch([1, 2, 3], {"a.png": imgs[0], "b.png": imgs[1]})
    second = batch([4, 2], {"c.png": imgs[2], "a.png": imgs[0]})  # image a.png: other row, other companions
    for spec in ("image:gaussian_noise", "image:occlusion"):
        one, two = corrupt(spec, 0.5, dict(first)), corrupt(spec, 0.5, dict(second))
        assert torch.equal(one["image"][0], two["image"][1]) and not torch.equal(one["image"][0], imgs[0]), spec
    for spec in ("text:word_drop", "text:typo"):
        one, two = corrupt(spec, 0.6, dict(first)), corrupt(spec, 0.6, dict(second))
        assert one["question"][1] == two["question"][1], spec  # question 2, wherever it stands
        ids = TOKENIZER([one["question"][1]])["input_ids"][0]
        row = one["text"]["input_ids"][1][one["text"]["attention_mask"][1].bool()].tolist()
        assert row == ids  # re-tokenised as the data module would
    assert corrupt("image:occlusion", 0.5, dict(first))["image"].shape == first["image"].shape


def test_missing_text_is_cls_sep() -> None:
    b = corrupt("missing:text", 1.0, batch([1, 3], {"a.png": images(1)[0], "b.png": images(1)[0]}))
    cls, sep = TOKENIZER.cls_token_id, TOKENIZER.sep_token_id
    assert b["question"] == ["", ""] and b["text"]["input_ids"].tolist() == [[cls, sep], [cls, sep]]
    assert b["text"]["attention_mask"].tolist() == [[1, 1], [1, 1]]


def test_stable_seed_is_fixed() -> None:
    assert stable_seed(0, "image:occlusion", "a.png") == stable_seed(0, "image:occlusion", "a.png")
    assert stable_seed(0, "x", 1) != stable_seed(1, "x", 1) and 0 <= stable_seed("a") < 2**63


# -- the numbers -------------------------------------------------------------------------------------------------
def test_relative_robustness_is_the_normalised_trapezoid() -> None:
    assert relative_robustness([0, 0.5, 1], [80, 60, 20]) == 55.0  # (0.5·70 + 0.5·40) / 1
    assert relative_robustness([0.25, 0.5, 1.0], [90, 70, 50]) == 50 / 0.75  # (0.25·80 + 0.5·60) / 0.75
    assert relative_robustness([0.3], [42.0]) == 42.0
    with pytest.raises(ValueError, match="ascending"):
        relative_robustness([0.5, 0.5], [1, 2])


def test_effective_robustness_shifts_the_baseline_to_the_clean_accuracy() -> None:
    base = relative_robustness([0, 0.5, 1], [80, 60, 40])  # 60
    row = relative_robustness([0, 0.5, 1], [70, 65, 60])  # 65
    assert effective_robustness(row, 70, base, 80) == 15.0  # 65 - (60 + (70 - 80))
    assert effective_robustness(base, 80, base, 80) == 0.0


def test_parse_levels_and_request() -> None:
    assert parse_levels("0.5, 0,1") == (0.0, 0.5, 1.0)
    for text, msg in (("1.5", "out of range"), ("a", "not a number"), ("0,0", "twice"), ("", "no level")):
        with pytest.raises(ConfigError, match=msg):
            parse_levels(text)
    assert not RobustnessRequest.parse() and RobustnessRequest.parse(missing=["text"])
    assert RobustnessRequest.parse(["text:typo"]).levels == tuple(i / 10 for i in range(11))
    with pytest.raises(ConfigError, match="choose from image:gaussian_noise"):
        RobustnessRequest.parse(["image:blur"])
    with pytest.raises(ConfigError, match="choose from image, text"):
        RobustnessRequest.parse(missing=["audio"])
    with pytest.raises(ConfigError, match="--levels needs --corrupt"):
        RobustnessRequest.parse(levels="0,1")


ROWS = [{"score": s, "answer_type": t, "question_type": None} for s, t in
        ((1.0, "yes/no"), (0.3, "other"), (0.6, "other"), (0.0, "yes/no"), (1.0, None), (None, "other"))]


def test_level_accuracy_is_summarize_s_numbers() -> None:
    ours, theirs = level_accuracy(ROWS), summarize(ROWS, resamples=10)
    assert ours == {"overall": theirs["overall"], "per_answer_type": theirs["perAnswerType"]}
    assert ours["overall"] == 58.0 and ours["per_answer_type"] == {"other": 45.0, "yes/no": 50.0}


def test_robustness_results_runs_level_zero_once_and_fills_the_blocks() -> None:
    calls = []
    acc = {0.0: 1.0, 0.5: 0.5, 1.0: 0.0}

    def run_pass(spec: str, level: float) -> list[dict]:
        calls.append((spec, level))
        s = 0.25 if spec.startswith("missing") else acc[level] if spec == "image:occlusion" else 1.0
        return [{"score": s, "answer_type": "other"}, {"score": 1.0, "answer_type": "yes/no"}]

    req = RobustnessRequest.parse(["image:occlusion", "text:typo"], "0,0.5,1", ["image"])
    out = robustness_results(req, run_pass, {"overall": 100.0})
    assert calls == [("image:occlusion", 0.0), ("image:occlusion", 0.5), ("image:occlusion", 1.0),
                     ("text:typo", 0.5), ("text:typo", 1.0), ("missing:image", 1.0)]
    occ = out["robustness"]["image:occlusion"]
    assert occ["accuracy"] == [100.0, 75.0, 50.0] and occ["relative_robustness"] == 75.0
    assert occ["per_answer_type"] == {"other": [100.0, 50.0, 0.0], "yes/no": [100.0, 100.0, 100.0]}
    assert out["robustness"]["text:typo"]["accuracy"] == [100.0, 100.0, 100.0]
    assert out["missing"]["image"] == {"accuracy": 62.5, "per_answer_type": {"other": 25.0, "yes/no": 100.0},
                                       "drop": 37.5}
    table = format_robustness(out)
    assert "image:occlusion" in table and "75.00" in table and "missing image: 62.50% (-37.50 points vs clean)" in table


# -- the ablation's columns ------------------------------------------------------------------------------------
def cell(seed: int, rr: float, clean: float) -> dict:
    return {"seed": seed, "robustness": {"image:occlusion": {
        "levels": [0.0, 1.0], "accuracy": [clean, 2 * rr - clean], "relative_robustness": rr,
        "clean_accuracy": clean}}}


def test_ablation_effective_robustness_against_the_baseline_s_seed_mean(tmp_path: Path) -> None:
    base = [cell(0, 60.0, 80.0), cell(1, 62.0, 82.0)]  # mean RR 61, mean clean 81
    row = [cell(0, 65.0, 70.0), cell(1, 66.0, 74.0)]  # ER 65 - (61 + (70 - 81)) = 15 and 66 - (61 - 7) = 12
    mine = summarize_robustness(row, base, ["image:occlusion"])["image:occlusion"]
    assert mine["effective"] == {"mean": 13.5, "min": 12.0, "max": 15.0}
    assert mine["relative"] == {"mean": 65.5, "min": 65.0, "max": 66.0}
    assert mine["accuracy"] == {"mean": [72.0, 59.0], "min": [70.0, 58.0], "max": [74.0, 60.0]}
    own = summarize_robustness(base, base, ["image:occlusion"])["image:occlusion"]["effective"]
    assert own == {"mean": 0.0, "min": 0.0, "max": 0.0}
    summaries = [{"label": label, "seeds": [0, 1], "overall": {"mean": 1.0, "min": 1.0, "max": 1.0},
                  "per_question_type": {}, "vs_baseline": None, "parameters": None, "samples_per_s": 1.0,
                  "wall_seconds": 60.0, "robustness": summarize_robustness(cells, base, ["image:occlusion"])}
                 for label, cells in (("concat", base), ("gated", row))]
    table = format_markdown(summaries, "concat")
    assert "| RR image:occlusion | ER image:occlusion |" in table
    assert "| 65.50 (65.00–66.00) | 13.50 (12.00–15.00) |" in table
    flat = csv_rows(summaries)
    assert flat[1]["er_image:occlusion_mean"] == 13.5 and flat[0]["rr_image:occlusion_max"] == 62.0
    from mmfuse.viz.ablation import write_robustness_plot

    assert write_robustness_plot(summaries, tmp_path / "r.png").stat().st_size > 0
    assert write_robustness_plot([{**s, "robustness": {}} for s in summaries], tmp_path / "none.png") is None
