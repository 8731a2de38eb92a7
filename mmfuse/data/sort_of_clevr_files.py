"""Writing the Sort-of-CLEVR files (``tools/make_sort_of_clevr.py``): images, one JSONL per split, scenes, summary.

The scenes, questions and answers themselves are :mod:`mmfuse.data.sort_of_clevr`; this module only lays them
out on disk, byte-identically for a seed.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmfuse.data.sort_of_clevr import (
    ANNOTATORS,
    BACKGROUND,
    IMAGE_SIZE,
    OBJECT_SIZE,
    ORDER_ANSWER_TYPE,
    ORDER_QUESTION,
    ORDER_TYPE,
    PNG_COMPRESS_LEVEL,
    QUESTIONS,
    QUESTIONS_PER_KIND,
    SPLITS,
    colours_left_to_right,
    make_image,
    noisy_orders,
    render_scene,
)
from mmfuse.errors import DataError

__all__ = ["write_sort_of_clevr"]


def _owned_paths(out: Path) -> list[Path]:
    """Everything the generator writes in ``out``: what ``overwrite`` removes (nothing else)."""
    return ([out / "images" / s for s in SPLITS] + [out / f"{s}.jsonl" for s in SPLITS]
            + [out / f"scenes_{s}.jsonl" for s in SPLITS] + [out / f"order_{s}.jsonl" for s in SPLITS]
            + [out / "summary.json"])


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"output directory {str(out)!r} is not empty; pass --overwrite (overwrite=True) to "
                            f"replace the Sort-of-CLEVR files in it")
        for p in _owned_paths(out):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()


def _check_order_options(colour_order: bool, noise: float | None, annotators: int) -> None:
    if noise is None:
        return
    if not colour_order:
        raise DataError(f"Sort-of-CLEVR noise={noise!r} corrupts the colour_order answers; pass colour_order=True "
                        f"(--colour-order) with it")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 1.0:
        raise DataError(f"Sort-of-CLEVR noise must be a number in [0, 1] (the share of annotator answers "
                        f"corrupted), got {noise!r}")
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise DataError(f"Sort-of-CLEVR annotators must be an integer >= 1, got {annotators!r}")


def write_sort_of_clevr(out: Path | str, counts: dict[str, int] | None = None, seed: int = 0,
                        overwrite: bool = False, progress: Callable[[str, int, int], None] | None = None,
                        colour_order: bool = False, noise: float | None = None, annotators: int = ANNOTATORS
                        ) -> dict[str, Any]:
    """Write the dataset into ``out`` (the config's ``data.root``).

    Files: ``images/<split>/<i>.png`` (``i`` zero-padded to 5 digits), ``<split>.jsonl`` (records in the
    documented JSONL format: ``question_id`` counting up across train, val, test; ``image`` relative to
    ``out``; ``question``; ``answers`` (one element); ``question_type``; ``answer_type``),
    ``scenes_<split>.jsonl`` (per image ``{"image", "objects": [{"color", "shape", "center", "size"}]}``)
    and ``summary.json``; with ``colour_order`` also ``order_<split>.jsonl``, one colour_order question
    per image (same record format; ids go on counting after the last id of ``test.jsonl``).

    Args:
        out: output directory; must be empty or absent unless ``overwrite`` (which removes only the
            files listed above).
        counts: images per split (default train 9,800, val 1,000, test 1,000), each >= 1.
        seed: a non-negative integer.
        progress: optional ``(split, done, total)`` callback.
        colour_order: also write the ``order_<split>.jsonl`` files (every other file is unchanged).
        noise: None (one answer per order question) or the share in [0, 1] of ``annotators`` answers
            corrupted by an adjacent swap (see the module doc); needs ``colour_order``.
        annotators: answers per order question when ``noise`` is given, an integer >= 1.

    Returns:
        The summary (also written to ``summary.json``): seed, geometry, per split images, questions and
        questions per type; with ``colour_order`` a ``colour_order`` entry (file, noise, annotators, per
        split questions and corrupted answers).
    """
    counts = dict(counts or {"train": 9800, "val": 1000, "test": 1000})
    if set(counts) != set(SPLITS) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                         for v in counts.values()):
        raise DataError(f"Sort-of-CLEVR counts must give train, val and test each an integer >= 1, got {counts}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"Sort-of-CLEVR seed must be a non-negative integer, got {seed!r}")
    _check_order_options(colour_order, noise, annotators)
    out = Path(out)
    _prepare_output(out, overwrite)
    summary: dict[str, Any] = {"dataset": "sort_of_clevr", "seed": seed, "image_size": IMAGE_SIZE,
                               "object_size": OBJECT_SIZE, "background": list(BACKGROUND),
                               "questions_per_image": 2 * QUESTIONS_PER_KIND, "splits": {}}
    order_summary: dict[str, Any] = {"file": "order_<split>.jsonl", "noise": noise,
                                     "annotators": 1 if noise is None else annotators, "splits": {}}
    qid = 0
    order_qid = 2 * QUESTIONS_PER_KIND * sum(counts.values())  # after the twenty questions' ids
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        records, scenes, per_type = [], [], dict.fromkeys(QUESTIONS, 0)
        orders, corrupted = [], 0
        for i in range(counts[split]):
            objects, questions = make_image(seed, split, i)
            name = f"images/{split}/{i:05d}.png"
            render_scene(objects).save(out / name, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
            scenes.append({"image": name, "objects": [o.to_json() for o in objects]})
            for q in questions:
                records.append({"question_id": qid, "image": name, "question": q.question, "answers": [q.answer],
                                "question_type": q.question_type, "answer_type": q.answer_type})
                per_type[q.question_type] += 1
                qid += 1
            if colour_order:
                order = colours_left_to_right(objects)
                answers = ([" ".join(order)] if noise is None else list(noisy_orders(
                    order, annotators, noise, random.Random(f"{seed}/{split}/{i}/{ORDER_TYPE}"))))
                corrupted += sum(a != " ".join(order) for a in answers)
                orders.append({"question_id": order_qid, "image": name, "question": ORDER_QUESTION,
                               "answers": answers, "question_type": ORDER_TYPE, "answer_type": ORDER_ANSWER_TYPE})
                order_qid += 1
            if progress is not None:
                progress(split, i + 1, counts[split])
        _write_jsonl(out / f"{split}.jsonl", records)
        _write_jsonl(out / f"scenes_{split}.jsonl", scenes)
        summary["splits"][split] = {"images": counts[split], "questions": len(records), "per_question_type": per_type}
        if colour_order:
            _write_jsonl(out / f"order_{split}.jsonl", orders)
            order_summary["splits"][split] = {"questions": len(orders), "corrupted_answers": corrupted}
    if colour_order:
        summary["colour_order"] = order_summary
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
