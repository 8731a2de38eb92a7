"""The ablation harness's bookkeeping: grid parsing and expansion, row names, and the per-row summary (mean
and range over seeds, the paired difference against the baseline over seed-averaged question scores)."""

from __future__ import annotations

import pytest

from mmfuse.evaluation.ablation import (
    csv_rows,
    expand_grid,
    find_row,
    format_markdown,
    parse_axis,
    row_label,
    row_slug,
    summarize_row,
)


def test_axes_parse_and_expand_first_axis_slowest() -> None:
    assert parse_axis("model.fusion.name=concat, gated") == ("model.fusion.name", ["concat", "gated"])
    rows = expand_grid([parse_axis("a=1,2"), parse_axis("b=x,y,z")])
    assert [row_label(r) for r in rows] == ["a=1 b=x", "a=1 b=y", "a=1 b=z", "a=2 b=x", "a=2 b=y", "a=2 b=z"]
    assert parse_axis("model.modalities=[text],[image],[text, image]") == (
        "model.modalities", ["[text]", "[image]", "[text, image]"])
    assert parse_axis("m.h={a: 1, b: 2},{}")[1] == ["{a: 1, b: 2}", "{}"]
    for bad in ("model.fusion.name", "=a,b", "k=", "k=a,a", "k=[a,b", "k=a],[b"):
        with pytest.raises(ValueError, match="--grid"):
            parse_axis(bad)
    with pytest.raises(ValueError, match="more than one axis"):
        expand_grid([("a", ["1"]), ("a", ["2"])])


def test_rows_are_found_by_label_or_single_value_and_get_safe_folders() -> None:
    rows = expand_grid([parse_axis("model.fusion.name=concat,gated")])
    assert find_row(rows, "gated") == {"model.fusion.name": "gated"}
    assert find_row(rows, "model.fusion.name=concat") == {"model.fusion.name": "concat"}
    with pytest.raises(ValueError, match="rows: model.fusion.name=concat; model.fusion.name=gated"):
        find_row(rows, "film")
    assert row_slug({"model.fusion.name": "gated", "optim.lr": "3e-4"}) == "fusion-gated__lr-3e-4"
    assert row_slug({"x": "a/b c"}) == "x-a_b_c"


def _cell(seed: int, scores: list[float], acc: float, types: dict[str, float]) -> dict:
    return {"seed": seed,
            "metrics": {"test_accuracy": {"overall": acc, "perQuestionType": types},
                        "parameters": {"total": 1_500_000}, "train_samples_per_s": 100.0 + seed,
                        "wall_seconds": 60.0 * (seed + 1)},
            "per_question": [{"question_id": i, "score": s} for i, s in enumerate(scores)]}


def test_summary_means_ranges_and_paired_difference_over_seed_averaged_scores() -> None:
    base = [_cell(0, [1, 0, 0, 0], 25.0, {"shape": 50.0}), _cell(1, [1, 1, 0, 0], 50.0, {"shape": 40.0})]
    row = [_cell(0, [1, 1, 1, 0], 75.0, {"shape": 80.0}), _cell(1, [1, 1, 0, 1], 75.0, {"shape": 70.0})]
    s = summarize_row(row, base, resamples=200)
    assert s["seeds"] == [0, 1] and s["overall"] == {"mean": 75.0, "min": 75.0, "max": 75.0}
    assert s["per_question_type"]["shape"] == {"mean": 75.0, "min": 70.0, "max": 80.0}
    assert s["parameters"] == 1_500_000 and s["samples_per_s"] == 100.5 and s["wall_seconds"] == 90.0
    # seed-averaged scores: base [1, .5, 0, 0], row [1, 1, .5, .5] -> difference 0.375 per question
    d = s["vs_baseline"]
    assert d["diff"] == pytest.approx(37.5) and d["questions"] == 4 and d["seeds"] == [0, 1]
    assert d["ci"][0] <= 37.5 <= d["ci"][1]
    # only the seeds both rows have are paired
    one = summarize_row(row[:1], base, resamples=200)["vs_baseline"]
    assert one["seeds"] == [0] and one["diff"] == pytest.approx(50.0)
    assert summarize_row(base, None)["vs_baseline"] is None

    table = format_markdown([{"label": "b", **summarize_row(base, None)}, {"label": "r", **s}], "b")
    assert "| b | 0,1 | 37.50 (25.00–50.00) | 45.00 (40.00–50.00) | baseline | 1.50 M |" in table
    assert "| r | 0,1 | 75.00 (75.00–75.00) |" in table and "+37.50 [" in table
    flat = csv_rows([{"label": "r", **s}])[0]
    assert flat["overall_mean"] == 75.0 and flat["shape_min"] == 70.0
    assert flat["diff_vs_baseline"] == pytest.approx(37.5)


def test_answer_types_get_their_own_columns_before_the_question_types() -> None:
    # Sort-of-CLEVR's relational / non-relational split, mean and range over two seeds
    cells = [_cell(0, [1, 0], 50.0, {"count": 60.0}), _cell(1, [1, 1], 100.0, {"count": 80.0})]
    cells[0]["metrics"]["test_accuracy"]["perAnswerType"] = {"relational": 40.0, "non-relational": 60.0}
    cells[1]["metrics"]["test_accuracy"]["perAnswerType"] = {"relational": 90.0, "non-relational": 100.0}
    s = summarize_row(cells, None)
    assert s["per_answer_type"]["relational"] == {"mean": 65.0, "min": 40.0, "max": 90.0}
    table = format_markdown([{"label": "a", **s}], "a")
    assert "| row | seeds | overall | non-relational (answer type) | relational (answer type) | count |" in table
    assert "| a | 0,1 | 75.00 (50.00–100.00) | 80.00 (60.00–100.00) | 65.00 (40.00–90.00) | 70.00 (60.00–80.00) |" \
        in table
    flat = csv_rows([{"label": "a", **s}])[0]
    assert flat["answer_type:relational_max"] == 90.0 and flat["count_mean"] == 70.0
