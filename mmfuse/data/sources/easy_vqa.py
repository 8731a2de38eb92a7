"""``easy_vqa`` source: the easy-VQA toy dataset shipped inside the ``easy-vqa`` pip package.

Nothing is downloaded: the questions (JSON) and 64x64 PNG images live in the
installed package. Splits: ``train`` (38,575 questions, 4,000 images) and
``test`` (9,673 questions, 1,000 images); 13 answers (yes/no, 8 colours, 3 shapes).

Record fields:

* ``question_id``: index of the question in the package's list for the split,
  plus an offset of 0 for ``train`` and :data:`TEST_ID_OFFSET` (1,000,000) for
  ``test``, so ids are stable across runs and never collide between splits.
* ``image``: absolute path of the package's PNG; ``image_id``: ``"{split}/{id}"``
  (image ids restart at 0 in each split, hence the split prefix).
* ``answers``: the single answer as a 1-tuple.
* ``answer_type``: ``"yes/no"``, ``"color"`` or ``"shape"`` (from the answer).
* ``question_type``: the question's *template*: the lower-cased question with
  each colour word replaced by ``<color>`` and each shape word by ``<shape>``,
  e.g. ``"is there a <color> shape in the image?"`` (24 templates in all). It
  groups questions that test the same skill, independent of the object asked about.

``spec`` and ``root`` are ignored (the data location is fixed by the package).
Note: ``easy_vqa.get_answers()`` order is deliberately not used for anything.
"""

from __future__ import annotations

import re
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources.base import fast_realpath, register_source, unknown_split
from mmfuse.errors import DataError

SPLITS: tuple[str, ...] = ("train", "test")
TEST_ID_OFFSET = 1_000_000
ID_OFFSETS: dict[str, int] = {"train": 0, "test": TEST_ID_OFFSET}

COLORS: tuple[str, ...] = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES: tuple[str, ...] = ("circle", "rectangle", "triangle")

_COLOR_RE = re.compile(rf"\b(?:{'|'.join(COLORS)})\b")
_SHAPE_RE = re.compile(rf"\b(?:{'|'.join(SHAPES)})\b")


def answer_type_of(answer: str) -> str:
    """``"yes/no"``, ``"color"`` or ``"shape"``; anything else is a DataError."""
    if answer in ("yes", "no"):
        return "yes/no"
    if answer in COLORS:
        return "color"
    if answer in SHAPES:
        return "shape"
    raise DataError(f"easy_vqa: unexpected answer {answer!r}")


def question_template(question: str) -> str:
    """The question with its colour/shape words replaced by ``<color>``/``<shape>``."""
    return _SHAPE_RE.sub("<shape>", _COLOR_RE.sub("<color>", question.strip().lower()))


def _package_split(split: str) -> tuple[tuple[list, list, list], dict[int, str]]:
    # Imported lazily so the other sources work without the easy-vqa package.
    try:
        import easy_vqa
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataError("easy_vqa source needs the 'easy-vqa' package: pip install easy-vqa") from e
    if split == "train":
        return easy_vqa.get_train_questions(), easy_vqa.get_train_image_paths()
    return easy_vqa.get_test_questions(), easy_vqa.get_test_image_paths()


@register_source("easy_vqa")
def load_easy_vqa(split: str, spec: Any = None, root: str | None = None) -> list[QARecord]:
    """Load split ``train`` or ``test`` of easy-VQA from the installed package."""
    if split not in SPLITS:
        raise unknown_split("easy_vqa", split, SPLITS)
    (questions, answers, image_ids), image_paths = _package_split(split)
    offset = ID_OFFSETS[split]
    where = f"easy_vqa {split} questions.json"
    records: list[QARecord] = []
    for i, (question, answer, image_id) in enumerate(zip(questions, answers, image_ids)):
        qid = offset + i
        path = image_paths.get(image_id)
        if path is None:
            raise DataError(f"{where}: question_id {qid}: no image file for image id {image_id!r}")
        try:
            answer_type = answer_type_of(answer)
        except DataError as e:
            raise DataError(f"{where}: question_id {qid}: {e}") from None
        records.append(
            QARecord(
                question_id=qid,
                image=fast_realpath(path),
                question=question,
                answers=(answer,),
                answer_type=answer_type,
                question_type=question_template(question),
                image_id=f"{split}/{image_id}",
            )
        )
    return records
