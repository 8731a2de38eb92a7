"""``vqav2`` source: the official VQAv2 JSON files plus a COCO image folder.

``spec`` is a mapping with keys

* ``questions``: ``v2_OpenEnded_mscoco_<subtype>_questions.json``
  (``{"data_subtype": ..., "questions": [{"image_id", "question", "question_id"}]}``),
* ``annotations`` (optional / null for the test split, whose answers are then
  empty): ``v2_mscoco_<subtype>_annotations.json`` (``{"annotations": [{"question_id",
  "image_id", "answers": [{"answer", ...}], "answer_type", "question_type", ...}]}``),
* ``images``: the COCO image folder (resolved against ``root`` when relative).

The question/annotation paths are tried relative to ``root`` first, then as given.
Image files are named ``COCO_{subset}_{image_id:012d}.jpg``. The subset
(``train2014``/``val2014``/``test2015``) is taken from the questions file's
``data_subtype`` (``test-dev2015`` maps to ``test2015``, whose folder holds the
test-dev images); when that field is absent or unknown it is inferred from the
file names in the folder, which must then all share one subset. Images are not
opened here. Records keep all 10 raw answers; ``image_id`` is ``"{subset}/{id}"``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources.base import register_source, resolve_data_file
from mmfuse.errors import DataError

SUBTYPE_TO_SUBSET: dict[str, str] = {
    "train2014": "train2014",
    "val2014": "val2014",
    "test2015": "test2015",
    "test-dev2015": "test2015",
}
_COCO_NAME = re.compile(r"^COCO_([A-Za-z0-9-]+)_(\d{12})\.jpg$")


def _read_json(path: str, key: str) -> tuple[dict, list]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataError(f"{path}: expected a JSON object with a {key!r} list (official VQAv2 format)")
    return data, data[key]


def _int_id(entry: Any, key: str, path: str, index: int) -> int:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: entry {index} is not a JSON object")
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        qid = entry.get("question_id")
        raise DataError(f"{path}: entry {index} (question_id {qid!r}): {key!r} must be an int, got {value!r}")
    return value


def infer_subset(data_subtype: Any, images_dir: str) -> str:
    """COCO subset used in image file names (see the module docstring)."""
    if data_subtype in SUBTYPE_TO_SUBSET:
        return SUBTYPE_TO_SUBSET[data_subtype]
    subsets = {m.group(1) for name in os.listdir(images_dir) if (m := _COCO_NAME.match(name))}
    if len(subsets) != 1:
        found = ", ".join(sorted(subsets)) or "no COCO_<subset>_<id>.jpg files"
        raise DataError(
            f"{images_dir}: cannot tell the COCO subset (questions file data_subtype "
            f"{data_subtype!r}; folder has {found})"
        )
    return subsets.pop()


def _read_annotations(path: str) -> dict[int, dict]:
    _, anns = _read_json(path, "annotations")
    by_qid: dict[int, dict] = {}
    for i, ann in enumerate(anns):
        qid = _int_id(ann, "question_id", path, i)
        if qid in by_qid:
            raise DataError(f"{path}: duplicate annotation for question_id {qid}")
        answers = ann.get("answers")
        if not isinstance(answers, list) or not all(
            isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers
        ):
            raise DataError(f"{path}: question_id {qid}: 'answers' must be a list of {{'answer': str, ...}}")
        by_qid[qid] = ann
    return by_qid


@register_source("vqav2")
def load_vqav2(split: str, spec: Any, root: str | None) -> list[QARecord]:
    """Load one split of VQAv2 from the files named by ``spec``."""
    ctx = f"vqav2 source, split {split!r}"
    if not isinstance(spec, Mapping) or "questions" not in spec or "images" not in spec:
        raise DataError(
            f"{ctx}: expected a mapping with keys questions, annotations (optional), images; got {spec!r}"
        )
    q_path = resolve_data_file(spec["questions"], root, f"{ctx} questions")
    q_origin = str(q_path)
    images = os.fspath(spec["images"])
    if root is not None and not os.path.isabs(images):
        images = os.path.join(root, images)
    images = os.path.realpath(images)
    if not os.path.isdir(images):
        raise DataError(f"{ctx}: images folder {spec['images']!r} not found (resolved to {images})")

    q_data, questions = _read_json(q_path, "questions")
    subset = infer_subset(q_data.get("data_subtype"), images)
    ann_spec = spec.get("annotations")
    a_path = resolve_data_file(ann_spec, root, f"{ctx} annotations") if ann_spec else None
    anns = _read_annotations(a_path) if a_path else None

    records: list[QARecord] = []
    seen: set[int] = set()
    for i, q in enumerate(questions):
        qid = _int_id(q, "question_id", q_path, i)
        image_id = _int_id(q, "image_id", q_path, i)
        if qid in seen:
            raise DataError(f"{q_path}: duplicate question_id {qid}")
        seen.add(qid)
        if not isinstance(q.get("question"), str):
            raise DataError(f"{q_path}: question_id {qid}: 'question' must be a string")
        answers: tuple[str, ...] = ()
        answer_type = question_type = None
        if anns is not None:
            ann = anns.get(qid)
            if ann is None:
                raise DataError(f"{a_path}: annotation for question_id {qid} (from {q_path}) is missing")
            if ann.get("image_id") != image_id:
                raise DataError(
                    f"{a_path}: question_id {qid}: annotation image_id {ann.get('image_id')!r} "
                    f"!= questions file image_id {image_id} ({q_path})"
                )
            answers = tuple(a["answer"] for a in ann["answers"])
            answer_type, question_type = ann.get("answer_type"), ann.get("question_type")
        records.append(
            QARecord(
                question_id=qid,
                image=os.path.join(images, f"COCO_{subset}_{image_id:012d}.jpg"),
                question=q["question"],
                answers=answers,
                answer_type=answer_type,
                question_type=question_type,
                image_id=f"{subset}/{image_id}",
                origin=q_origin,  # one string shared by the split: the question id finds the entry
            )
        )
    if anns is not None and len(anns) != len(seen):
        extra = sorted(set(anns) - seen)
        raise DataError(
            f"{a_path}: {len(extra)} annotation(s) have no question in {q_path}, "
            f"e.g. question_id {', '.join(map(str, extra[:5]))}"
        )
    return records
