"""``prepared`` source: the questions of a dataset written by ``tools/prepare_data.py`` (``data.root`` is its
folder or URL; ``data.train/val/test`` are not used). The images are not files here: batches stream them
from the dataset's LitData chunks (:mod:`mmfuse.data.streaming`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources.base import register_source, unknown_split
from mmfuse.errors import DataError

FORMAT = 1
META = "prepared.json"
FIELDS = ("question_id", "image", "question", "answers", "answer_type", "question_type", "image_id")


def is_remote(root: str) -> bool:
    """True for a URL LitData streams from (``s3://``, ``gs://``, ...), False for a local folder."""
    return "://" in str(root) and not str(root).startswith("local:")


def split_dir(root: str, split: str) -> str:
    """Where the chunks of ``split`` lie."""
    return f"{str(root).rstrip('/')}/{split}"


def fetch(root: str, name: str) -> Path:
    """The local path of file ``name`` of a prepared dataset: itself for a local folder; for a URL, a copy
    fetched with LitData's downloader into a cache folder."""
    if not is_remote(root):
        return Path(root) / name
    from litdata.streaming.downloader import get_downloader

    cache = Path(os.environ.get("MMFUSE_CACHE", Path(tempfile.gettempdir()) / "mmfuse_cache"))
    local = cache / hashlib.sha1(str(root).encode()).hexdigest()[:16] / name
    local.parent.mkdir(parents=True, exist_ok=True)
    get_downloader(str(root), str(local.parent), []).download_file(f"{str(root).rstrip('/')}/{name}", str(local))
    return local


def read_meta(root: str) -> dict[str, Any]:
    """``prepared.json`` of the prepared dataset at ``root``; a DataError if it is not one."""
    path = fetch(root, META)
    if not path.is_file():
        raise DataError(f"{root} is not a prepared dataset (no {META}); write one with tools/prepare_data.py")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: prepared-data format {meta.get('format')!r}, this mmfuse reads {FORMAT}; "
                        "prepare the dataset again")
    return meta


def record_to_json(r: QARecord) -> str:
    """One line of ``<split>.jsonl``: the record's fields (``image_id`` is the image's key in the chunks)."""
    return json.dumps({"question_id": r.question_id, "image": r.image, "question": r.question,
                       "answers": list(r.answers), "answer_type": r.answer_type, "question_type": r.question_type,
                       "image_id": r.image_key})


@register_source("prepared")
def load_prepared(split: str, spec: Any, root: str | None) -> list[QARecord]:
    if not root:
        raise DataError("data.source=prepared needs data.root: the folder (or URL) tools/prepare_data.py wrote")
    meta = read_meta(root)
    if split not in meta["splits"]:
        raise unknown_split("prepared", split, meta["splits"])
    path = fetch(root, f"{split}.jsonl")
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                obj = json.loads(line)
                records.append(QARecord(question_id=obj["question_id"], image=obj["image"], question=obj["question"],
                                        answers=tuple(obj["answers"]), answer_type=obj["answer_type"],
                                        question_type=obj["question_type"], image_id=str(obj["image_id"])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{path} line {n}: not a prepared question record ({type(e).__name__}: {e}); "
                                f"expected the fields {', '.join(FIELDS)}") from None
    return records
