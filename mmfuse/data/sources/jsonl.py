"""``jsonl`` source: one JSON object per line, the generic format for custom datasets.

Each non-blank line is an object with

* ``question_id`` (int or str, required, unique in the file; ``1`` and ``"1"``
  count as the same id because ids are written as JSON keys in prediction files),
* ``image`` (str) **or** ``video`` (str), exactly one: path relative to the data root (or
  absolute, but it must lie inside the root; ``..`` and symlinks escaping the root are refused).
  A video is a video file (``.mp4 .webm .mkv .avi .mov .gif``, decoded with PyAV), a folder of
  frame images or a ``.npy``/``.npz`` frame array (see :mod:`mmfuse.data.video_io`). One file holds
  one kind: all images or all videos,
* ``question`` (str, required),
* ``answers`` (list of str, required; ``[]`` for unlabelled data),
* optional ``answer_type``, ``question_type`` (str or null) and ``image_id``
  (str or int; questions sharing it share one image (video) encoding; defaults to the path).

``spec`` is the path of the .jsonl file (tried relative to ``root`` first, then
as given). ``root`` defaults to the directory containing the file. Images are not
opened here (see :mod:`mmfuse.data.images`); the path is only resolved.
Every error names the file and the 1-based line number.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources.base import register_source, resolve_data_file, resolve_inside
from mmfuse.errors import DataError

REQUIRED_FIELDS: tuple[str, ...] = ("question_id", "question", "answers")
MEDIA_FIELDS: tuple[str, ...] = ("image", "video")


def _optional_str(obj: dict, key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise DataError(f"{where}: field {key!r} must be a string or null, got {type(value).__name__}")


def _parse_line(obj: Any, where: str, root: str) -> QARecord:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    media = [k for k in MEDIA_FIELDS if k in obj]
    if not media:
        missing.insert(1, "image (or video)")
    if missing:
        raise DataError(
            f"{where}: missing required field(s) {', '.join(missing)}; "
            f"expected fields question_id, image (or video), question, answers"
        )
    if len(media) > 1:
        raise DataError(f"{where}: has both 'image' and 'video'; a record is about one of them")
    qid = obj["question_id"]
    # bool is an int subclass; `true` as an id is surely a mistake.
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        raise DataError(f"{where}: 'question_id' must be an int or a string, got {qid!r}")
    question = obj["question"]
    if not isinstance(question, str):
        raise DataError(f"{where}: 'question' must be a string, got {type(question).__name__}")
    answers = obj["answers"]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where}: 'answers' must be a list of strings, got {answers!r}")
    image_id = obj.get("image_id")
    if isinstance(image_id, bool) or not (image_id is None or isinstance(image_id, (str, int))):
        raise DataError(f"{where}: 'image_id' must be a string, an int or null, got {image_id!r}")
    return QARecord(
        question_id=qid,
        image=resolve_inside(root, obj[media[0]], where),
        question=question,
        answers=tuple(answers),
        answer_type=_optional_str(obj, "answer_type", where),
        question_type=_optional_str(obj, "question_type", where),
        image_id=None if image_id is None else str(image_id),
        media=media[0],
        origin=where,
    )


def read_jsonl(path: str, root: str | None = None) -> list[QARecord]:
    """Parse a .jsonl file (see the module docstring) into records."""
    if root is None:
        root = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(root):
        raise DataError(f"{path}: data root {root!r} is not a directory")
    records: list[QARecord] = []
    seen: dict[str, int] = {}  # str(question_id) -> line number of first occurrence
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path} line {lineno}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                        "expected one JSON object per line"
                    ) from None
                record = _parse_line(obj, where, root)
                key = str(record.question_id)
                if key in seen:
                    raise DataError(
                        f"{where}: duplicate question_id {record.question_id!r} "
                        f"(first used on line {seen[key]})"
                    )
                seen[key] = lineno
                if records and record.media != records[0].media:
                    kind = {"image": "an image", "video": "a video"}
                    raise DataError(f"{where}: the record is about {kind[record.media]} but the file's first record "
                                    f"is about {kind[records[0].media]}; one file holds images or videos, not both")
                records.append(record)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return records


@register_source("jsonl")
def load_jsonl(split: str, spec: Any, root: str | None) -> list[QARecord]:
    """Load one split from the .jsonl file named by ``spec``."""
    if spec is None:
        raise DataError(f"jsonl source: split {split!r} has no file configured (expected a .jsonl path)")
    path = resolve_data_file(spec, root, f"jsonl source, split {split!r}")
    return read_jsonl(path, root)
