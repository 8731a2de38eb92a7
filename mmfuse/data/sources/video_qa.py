"""Video-QA adapters: MSRVTT-QA / MSVD-QA style JSON (``msrvtt_qa``, ``msvd_qa``) and TGIF-QA TSV (``tgif_qa``).

Each split's spec is the annotation file's path, or a mapping (paths relative to ``data.root``)::

    msrvtt_qa:  {annotations: train_qa.json, videos: videos/, template: "video{video_id}.mp4"}
    msvd_qa:    {annotations: train_qa.json, videos: YouTubeClips/, mapping: youtube_mapping.txt,
                 template: "{clip}.avi"}
    tgif_qa:    {questions: Train_frameqa_question.csv, videos: gifs/, template: "{gif_name}.gif"}

``videos`` defaults to ``data.root``; a template may name a folder of frames or an ``.npy`` instead.

**MSRVTT-QA / MSVD-QA** (Xu et al. 2017): a JSON list of objects with ``question``, ``answer`` (a
string, or a list of strings) and either ``video_id`` (MSRVTT: ``video{video_id}.mp4``; MSVD: ``vid<N>``
through ``youtube_mapping.txt``, whose lines are ``<clip name> vid<N>``) or a ``video`` path (the
LAVIS-style files); the id is ``id`` or ``question_id``. The question type is the question's first
word (what / who / how / when / where), the convention these benchmarks report by.

**TGIF-QA** (Jang et al. 2017): the tab-separated ``<Split>_<task>_question.csv`` files, header first.
The task is read from the header and the ``vid_id`` prefix: ``frameqa`` (``gif_name question answer
type vid_id key description``; ``type`` 0-3 = object / number / color / location), ``count`` (``gif_name
question answer vid_id key``; the answer is the integer), ``action`` and ``transition`` (``gif_name question
a1 .. a5 answer vid_id key``; ``answer`` is the index of the right option). Multiple-choice questions are
scored open-ended here: the answer is the right option's text, predicted over the whole answer
vocabulary (stricter than choosing among the 5 options; the paper reports 5-way accuracy). Count is
scored by exact match (the paper also reports MSE). ``vid_id`` is the question id.

Every error names the file and the entry (JSON index or TSV line).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources.base import register_source, resolve_data_file, resolve_inside
from mmfuse.errors import DataError

MC_OPTIONS = ("a1", "a2", "a3", "a4", "a5")
FRAMEQA_TYPES = {"0": "object", "1": "number", "2": "color", "3": "location"}
TGIF_PREFIXES = {"FRAMEQA": "frameqa", "COUNT": "count", "ACTION": "action", "TRANS": "transition"}


def _spec(spec: Any, split: str, source: str, file_key: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A split spec as a mapping; a plain path is the annotation file."""
    if spec is None:
        raise DataError(f"{source} source: split {split!r} has no file configured (expected a path or a mapping "
                        f"with keys {', '.join(keys)})")
    if isinstance(spec, (str, os.PathLike)):
        return {file_key: os.fspath(spec)}
    spec = dict(spec)
    unknown = sorted(set(spec) - set(keys))
    if unknown or file_key not in spec:
        raise DataError(f"{source} source, split {split!r}: spec {spec} needs {file_key!r}; "
                        f"valid keys: {', '.join(keys)}"
                        + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return spec


def _videos_dir(spec: dict[str, Any], root: str | None, ann: str) -> str:
    base = root if root is not None else os.path.dirname(ann)
    return os.path.join(base, spec["videos"]) if spec.get("videos") else base


def _answers(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return tuple(value)
    raise DataError(f"{where}: 'answer' must be a string or a non-empty list of strings, got {value!r}")


def _mapping(path: str) -> dict[str, str]:
    """MSVD's youtube_mapping.txt: ``<clip> vid<N>`` per line → {"N": clip}."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].startswith("vid"):
                raise DataError(f"{path} line {lineno}: expected '<clip name> vid<N>', got {line.strip()!r}")
            out[parts[1][3:]] = parts[0]
    return out


def _load_json_qa(split: str, spec: Any, root: str | None, source: str, template: str) -> list[QARecord]:
    s = _spec(spec, split, source, "annotations", ("annotations", "videos", "template", "mapping"))
    ann = resolve_data_file(s["annotations"], root, f"{source} source, split {split!r}")
    videos = _videos_dir(s, root, ann)
    mapping = _mapping(resolve_data_file(s["mapping"], root, f"{source} mapping")) if s.get("mapping") else None
    template = s.get("template") or template
    try:
        with open(ann, encoding="utf-8") as f:
            entries = json.load(f)
    except json.JSONDecodeError as err:  # not `e`: the loop below binds `e` to each entry
        raise DataError(f"{ann}: not valid JSON ({err.msg} at line {err.lineno}); "
                        "expected a list of questions") from None
    if not isinstance(entries, list):
        raise DataError(f"{ann}: expected a JSON list of questions, got {type(entries).__name__}")
    records: list[QARecord] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(entries):
        where = f"{ann} entry {i}"
        if not isinstance(e, dict) or not isinstance(e.get("question"), str) or "answer" not in e:
            raise DataError(f"{where}: expected an object with 'question' (str), 'answer' and 'video_id' or 'video'")
        qid = e.get("id", e.get("question_id"))
        if isinstance(qid, bool) or not isinstance(qid, (int, str)):
            raise DataError(f"{where}: needs an 'id' or 'question_id' (int or str), got {qid!r}")
        if str(qid) in seen:
            raise DataError(f"{where}: duplicate question id {qid!r} (first at entry {seen[str(qid)]})")
        seen[str(qid)] = i
        if isinstance(e.get("video"), str):
            rel = e["video"]
        elif "video_id" in e:
            vid = str(e["video_id"]).removeprefix("vid") if mapping is not None else e["video_id"]
            if mapping is not None and vid not in mapping:
                raise DataError(f"{where}: video_id {e['video_id']!r} is not in the mapping file {s['mapping']}")
            rel = template.format(video_id=e["video_id"], clip=mapping[vid] if mapping is not None else "")
        else:
            raise DataError(f"{where}: needs 'video_id' or 'video'")
        q = e["question"]
        records.append(QARecord(question_id=qid, image=resolve_inside(videos, rel, where), question=q,
                                answers=_answers(e["answer"], where), question_type=(q.split() or ["?"])[0].lower(),
                                media="video"))
    return records


@register_source("msrvtt_qa")
def load_msrvtt_qa(split: str, spec: Any, root: str | None) -> list[QARecord]:
    """MSRVTT-QA style JSON; videos ``video{video_id}.mp4`` by default (see the module docstring)."""
    return _load_json_qa(split, spec, root, "msrvtt_qa", "video{video_id}.mp4")


@register_source("msvd_qa")
def load_msvd_qa(split: str, spec: Any, root: str | None) -> list[QARecord]:
    """MSVD-QA style JSON; ``video_id`` N maps to a clip through ``mapping`` (``{clip}.avi`` by default)."""
    return _load_json_qa(split, spec, root, "msvd_qa", "{clip}.avi")


def _tgif_task(fields: list[str], vid_id: str) -> str:
    for prefix, task in TGIF_PREFIXES.items():
        if vid_id.startswith(prefix):
            return task
    if all(k in fields for k in MC_OPTIONS):
        return "multiple_choice"
    return "frameqa" if "type" in fields else "count"


def _tgif_answer(row: dict[str, str], fields: list[str], where: str) -> tuple[str, str]:
    """(answer text, answer type) of one TSV row."""
    raw = (row.get("answer") or "").strip()
    if all(k in fields for k in MC_OPTIONS):
        if not raw.isdigit() or not 0 <= int(raw) < len(MC_OPTIONS):
            raise DataError(f"{where}: 'answer' must be the index 0-4 of the right option, got {raw!r}")
        return row[MC_OPTIONS[int(raw)]].strip(), "other"
    if not raw:
        raise DataError(f"{where}: empty 'answer'")
    if "type" in fields:
        return raw, FRAMEQA_TYPES.get((row.get("type") or "").strip(), "other")
    return raw, "number"


@register_source("tgif_qa")
def load_tgif_qa(split: str, spec: Any, root: str | None) -> list[QARecord]:
    """TGIF-QA ``*_question.csv`` (tab-separated); videos ``{gif_name}.gif`` by default."""
    s = _spec(spec, split, "tgif_qa", "questions", ("questions", "videos", "template"))
    path = resolve_data_file(s["questions"], root, f"tgif_qa source, split {split!r}")
    videos, template = _videos_dir(s, root, path), s.get("template") or "{gif_name}.gif"
    records: list[QARecord] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        fields = [k.strip() for k in reader.fieldnames or []]
        reader.fieldnames = fields
        missing = [k for k in ("gif_name", "question", "answer", "vid_id") if k not in fields]
        if missing:
            raise DataError(f"{path} line 1: header {fields} lacks {', '.join(missing)}; expected a TGIF-QA "
                            "tab-separated file (gif_name, question, [a1..a5], answer, [type], vid_id, key, ...)")
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row or any(row.get(k) is None for k in fields):
                raise DataError(f"{where}: expected {len(fields)} tab-separated fields ({', '.join(fields)})")
            qid = row["vid_id"].strip()
            if qid in seen:
                raise DataError(f"{where}: duplicate vid_id {qid!r} (first on line {seen[qid]})")
            seen[qid] = reader.line_num
            answer, answer_type = _tgif_answer(row, fields, where)
            rel = template.format(gif_name=row["gif_name"].strip())
            records.append(QARecord(question_id=qid, image=resolve_inside(videos, rel, where),
                                    question=row["question"].strip(), answers=(answer,), answer_type=answer_type,
                                    question_type=_tgif_task(fields, qid), media="video",
                                    image_id=row["gif_name"].strip()))
    return records
