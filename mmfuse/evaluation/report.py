"""``evaluate --report``: figures from an evaluation directory and the model, linked by ``index.html``.

Figures (PNG, under ``<eval dir>/report/``): accuracy per answer type (with 95% intervals), per
question type, learning curves from the run's logs, confusion among the most frequent answers,
and - when the fusion exposes text->image attention on a patch grid (``cross_attention``) -
attention heat-maps over the image for ``eval.report_samples`` questions; after a robustness evaluation
(``--corrupt``), accuracy against the corruption level (``robustness.png``), and the missing-modality accuracies
in the summary table.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mmfuse.evaluation.results import read_rows
from mmfuse.layers import attention_weights
from mmfuse.viz import (
    plot_attention_grid,
    plot_confusion,
    plot_learning_curves,
    plot_type_accuracy,
    read_lightning_logs,
    write_index_html,
)
from mmfuse.viz.robustness import plot_robustness

log = logging.getLogger(__name__)
MAX_QUESTION_TYPES = 40  # more bars than this are unreadable: the most frequent are shown


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    return x


def pick_samples(rows: Sequence[Mapping[str, Any]], n: int, seed: int) -> list[Mapping[str, Any]]:
    """``n`` scored questions, seeded: about a third wrong (when there are), the rest right."""
    rng = random.Random(seed)
    scored = [r for r in rows if r["score"] is not None]
    wrong = [r for r in scored if r["score"] < 1.0]
    right = [r for r in scored if r["score"] >= 1.0]
    n_wrong = min(len(wrong), max(n // 3, n - len(right)))
    chosen = rng.sample(wrong, n_wrong) + rng.sample(right, min(len(right), n - n_wrong))
    return sorted(chosen, key=lambda r: str(r["question_id"]))


@torch.no_grad()
def attention_samples(system: Any, dataset: Any, rows: Sequence[Mapping[str, Any]], n: int,
                      seed: int) -> list[dict[str, Any]]:
    """Text->image attention of the model's fusion over the image grid, for ``n`` questions.

    Returns ``[]`` when the fusion gives no attention over image patches. The map of a question is
    the last layer's attention ``[heads, N_t, N_v]`` averaged over heads and valid text tokens.
    """
    model = system.model
    fusion, image_enc = model.fusion, dict(model.encoders).get("image")
    if image_enc is None or getattr(fusion, "context", None) != "image" or not hasattr(image_enc, "grid_size"):
        return []
    index = {r.question_id: i for i, r in enumerate(dataset.records)}
    picked = pick_samples(rows, n, seed)
    if not picked:
        return []
    batch = dataset[[index[r["question_id"]] for r in picked]]
    was_training = model.training
    model.eval()
    with attention_weights(model):  # computed explicitly only here; training uses the fused kernels
        out = model(_to_device(batch, system.device))["fusion"]
    model.train(was_training)
    if out.attention is None:
        return []
    gh, gw = image_enc.grid_size
    mask = out.mask.float()  # [B,N_t]
    attn = (out.attention.mean(1) * mask[..., None]).sum(1) / mask.sum(1).clamp(min=1)[:, None]  # [B,N_v]
    if attn.shape[-1] != gh * gw:
        log.warning("attention over %d tokens does not fit the %dx%d patch grid: no heat-maps", attn.shape[-1], gh, gw)
        return []
    images = batch["image"][batch["image_index"]].permute(0, 2, 3, 1).cpu().numpy()  # [B,H,W,3] uint8
    return [{"image": images[b], "attention": attn[b].reshape(gh, gw).float().cpu().numpy(),
             "question": batch["question"][b], "prediction": r["answer"], "answer": r["gold"],
             "correct": r["score"] >= 1.0} for b, r in enumerate(picked)]


def _question_type_figure(acc: Mapping[str, Any], path: Path) -> tuple[str, str, str] | None:
    counts = acc.get("perQuestionTypeCount", {})
    if not counts:
        return None
    top = sorted(counts, key=lambda t: (-counts[t], t))[:MAX_QUESTION_TYPES]
    plot_type_accuracy({t: acc["perQuestionType"][t] for t in top}, path, "VQA accuracy by question type",
                       counts={t: counts[t] for t in top})
    shown = "" if len(top) == len(counts) else f" (the {len(top)} most frequent of {len(counts)})"
    return "Accuracy by question type", path.name, f"Official per-question-type accuracy{shown}."


def write_report(eval_dir: Path, run_dir: Path, system: Any, dm: Any, split: str, samples: int = 12,
                 seed: int = 0) -> Path:
    """Write ``<eval_dir>/report/`` (figures + ``index.html``) for a finished evaluation.

    ``samples`` questions (chosen with ``seed``) get attention heat-maps when the fusion has them.
    """
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    rows = read_rows(eval_dir / "per_question.jsonl")
    acc, out = metrics["accuracy"], eval_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, str]] = []
    if "overall" in acc:
        groups = {"overall": acc["overall"], **acc["perAnswerType"]}
        ci = {"overall": acc["overall_ci95"], **acc["perAnswerTypeCI95"]}
        counts = {"overall": acc["num_scored"], **acc["perAnswerTypeCount"]}
        plot_type_accuracy(groups, out / "answer_types.png", f"VQA accuracy by answer type ({split})", ci, counts)
        figures.append(("Accuracy by answer type", "answer_types.png",
                        "Official VQA accuracy; error bars: 95% bootstrap interval over questions."))
        if (fig := _question_type_figure(acc, out / "question_types.png")) is not None:
            figures.append(fig)
    plot_learning_curves(read_lightning_logs(run_dir), out / "learning_curves.png", f"Learning curves: {run_dir.name}")
    figures.append(("Learning curves", "learning_curves.png", f"From the run's logs in {run_dir}."))
    scored = [r for r in rows if r["score"] is not None]
    if scored:
        plot_confusion([r["gold"] for r in scored], [r["answer"] for r in scored], out / "confusion.png")
        figures.append(("Confusion", "confusion.png", "Rows: most frequent ground-truth answer of the question; "
                        "columns: prediction. Among the most frequent answers."))
    maps = attention_samples(system, dm.datasets[split], rows, samples, seed) if samples > 0 else []
    if maps:
        plot_attention_grid(maps, out / "attention.png", title="Text-to-image attention (last fusion layer)")
        figures.append(("Attention", "attention.png", "Last cross-attention layer, averaged over heads and question "
                        "tokens, over the image patches; a third of the samples are errors when there are any."))
    if fig := _robustness_figure(metrics, out / "robustness.png"):
        figures.append(fig)
    leak = metrics["leakage"]
    summary = {"split": split, "checkpoint": metrics["checkpoint"], "questions": metrics["num_questions"],
               "fusion": type(system.model.fusion).__name__, "config hash": metrics["config_hash"][:16]}
    if "overall" in acc:
        low, high = acc["overall_ci95"]
        summary["VQA accuracy"] = f"{acc['overall']:.2f}% (95% CI {low:.2f}-{high:.2f})"
    if leak.get("checked"):
        summary["leakage (shared ids / image-question pairs)"] = (
            f"{leak['shared_question_ids']} / {leak['shared_image_question_pairs']}")
    for spec, block in (metrics.get("robustness") or {}).items():
        if block["relative_robustness"] is not None:
            summary[f"relative robustness, {spec}"] = f"{block['relative_robustness']:.2f}"
    for modality, m in (metrics.get("missing") or {}).items():
        if m["accuracy"] is not None:
            summary[f"VQA accuracy, {modality} missing"] = f"{m['accuracy']:.2f}%"
    return write_index_html(out, f"mmfuse evaluation: {split}", summary, figures)


def _robustness_figure(metrics: Mapping[str, Any], path: Path) -> tuple[str, str, str] | None:
    blocks = metrics.get("robustness") or {}
    if not blocks:
        return None
    panels = {f"{spec} (RR {b['relative_robustness']:.2f})" if b["relative_robustness"] is not None else spec:
              {"overall": {"levels": b["levels"], "accuracy": b["accuracy"]},
               **{t: {"levels": b["levels"], "accuracy": acc} for t, acc in b["per_answer_type"].items()}}
              for spec, b in blocks.items()}
    plot_robustness(panels, path, "VQA accuracy under a corrupted modality")
    return ("Robustness", path.name, "Accuracy against the corruption level (overall and per answer type), one panel "
            "per corruption; RR: relative robustness, the area under the overall curve divided by the level range.")
