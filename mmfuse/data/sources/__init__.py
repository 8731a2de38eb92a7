"""Data sources: registered loaders that turn one dataset split into ``list[QARecord]``.

Built-in sources: ``easy_vqa`` (the pip package), ``easy_vqa_noisy`` (easy-VQA
with simulated noisy annotators), ``jsonl`` (generic custom format, images or videos),
``vqav2`` (official VQAv2 JSON + COCO images), ``prepared`` (a dataset written by
``tools/prepare_data.py``, streamed) and the video-QA adapters ``msrvtt_qa``,
``msvd_qa`` and ``tgif_qa``. Use :func:`load_records` to load a split and
:func:`register_source` to add one.
"""

from __future__ import annotations

# Imported for their side effect of registering the built-in sources.
from mmfuse.data.sources import easy_vqa, easy_vqa_noisy, jsonl, prepared, video_qa, vqav2  # noqa: F401
from mmfuse.data.sources.base import (
    SOURCES,
    DataError,
    list_sources,
    load_records,
    register_source,
    resolve_inside,
)

__all__ = ["SOURCES", "DataError", "list_sources", "load_records", "register_source", "resolve_inside"]
