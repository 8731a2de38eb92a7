"""Leakage guard: does an evaluation split share questions with the training split?

Two kinds of overlap are counted:

* **shared question ids**: the same ``question_id`` in both splits;
* **identical (image, question) pairs**: an evaluation question whose text (compared after
  lower-casing and collapsing whitespace) is asked about the same image as a training question.
  The same image means the same file path, or - for files small enough to read (``max_hash_bytes``
  in all) - the same file *content*, so a copied image under a new name is still caught.

Either makes the evaluation number optimistic; :func:`check_leakage` counts both and
:func:`warn_leakage` says so loudly. Only question texts that occur in both splits need their
images compared, so the check stays cheap on real data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from mmfuse.data.schema import QARecord

log = logging.getLogger(__name__)
MAX_HASH_BYTES = 1 << 30  # read at most 1 GiB of image files to compare contents
_EXAMPLES = 5


class LeakageWarning(UserWarning):
    """An evaluation split overlaps the training split."""


def _question_key(text: str) -> str:
    return " ".join(text.lower().split())


def _file_digest(path: str, cache: dict[str, str]) -> str:
    if path not in cache:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cache[path] = h.hexdigest()
    return cache[path]


def _sizes(paths: Iterable[str]) -> int:
    """Total bytes of the readable files among ``paths`` (unreadable ones are the loader's to report)."""
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def check_leakage(train: Sequence[QARecord], evaluated: Sequence[QARecord],
                  max_hash_bytes: int = MAX_HASH_BYTES) -> dict[str, Any]:
    """Count the overlap of ``evaluated`` with ``train`` (see the module docstring).

    Returns:
        ``{"shared_question_ids": int, "shared_image_question_pairs": int, "image_identity":
        "content" | "path", "examples": [...]}``, counting evaluation questions.
    """
    train_ids = {r.question_id for r in train}
    shared_ids = [r.question_id for r in evaluated if r.question_id in train_ids]

    by_question: dict[str, list[QARecord]] = {}
    for r in train:
        by_question.setdefault(_question_key(r.question), []).append(r)
    candidates = [r for r in evaluated if _question_key(r.question) in by_question]
    asked = {_question_key(r.question) for r in candidates}
    # each file once: a common question ("what color is it?") pairs every candidate with thousands of images
    paths = {r.image for r in candidates} | {t.image for q in asked for t in by_question[q]}
    by_content = _sizes(paths) <= max_hash_bytes
    cache: dict[str, str] = {}

    def ident(r: QARecord) -> str:
        # unreadable files are the data loader's to report; here they are compared by path
        if by_content and os.path.isfile(r.image) and os.access(r.image, os.R_OK):
            return _file_digest(r.image, cache)
        return os.path.realpath(r.image)

    train_pairs = {(ident(t), q) for q in asked for t in by_question[q]}
    pairs = [r for r in candidates if (ident(r), _question_key(r.question)) in train_pairs]
    return {
        "shared_question_ids": len(shared_ids),
        "shared_image_question_pairs": len(pairs),
        "image_identity": "content" if by_content else "path",
        "examples": [{"question_id": r.question_id, "image": r.image, "question": r.question}
                     for r in pairs[:_EXAMPLES]]
        + [{"question_id": q} for q in shared_ids[: max(0, _EXAMPLES - len(pairs))]],
    }


def warn_leakage(report: dict[str, Any], split: str) -> bool:
    """Warn loudly (log + :class:`LeakageWarning`) if ``report`` shows any overlap; returns whether it did."""
    ids, pairs = report["shared_question_ids"], report["shared_image_question_pairs"]
    if not ids and not pairs:
        return False
    bar = "!" * 78
    msg = (f"LEAKAGE: the {split!r} split overlaps the training split: {ids} shared question id(s) and "
           f"{pairs} identical (image, question) pair(s) (images compared by {report['image_identity']}); "
           f"its accuracy is optimistic. Examples: {report['examples'][:3]}")
    log.warning("\n%s\n%s\n%s", bar, msg, bar)
    warnings.warn(msg, LeakageWarning, stacklevel=2)
    return True


def leakage_line(report: dict[str, Any], split: str) -> str:
    """One line for a CLI summary: empty when there is no overlap (or no check)."""
    if not report.get("checked", True) or not (report["shared_question_ids"] or report["shared_image_question_pairs"]):
        return ""
    return (f"WARNING: LEAKAGE: the {split} split shares {report['shared_question_ids']} question id(s) and "
            f"{report['shared_image_question_pairs']} identical (image, question) pair(s) with the training split")
