"""The prepared, streamed path for data beyond one machine's memory, on LitData.

``mmfuse.prepare_data`` (``tools/prepare_data.py``) writes a dataset once, per split, as LitData optimized
chunks: one item per image, holding its uint8 pixels at the model's input size and the ids of all of its
questions. Beside the chunks lie the questions themselves (``<split>.jsonl``, no pixels) and
``prepared.json`` (image size, counts, where it came from)::

    DIR/prepared.json   DIR/train.jsonl   DIR/train/{index.json, chunk-*.bin}   DIR/val.jsonl   DIR/val/ ...

Training reads it with ``data.source=prepared data.root=DIR`` (a local folder, or an ``s3://`` / ``gs://``
URL: LitData streams the chunks, the small files are fetched with its downloader). The questions file gives
the vocabulary and tokenizer as for any source; images arrive as batches of whole images with all their
questions (:class:`StreamedSplit`) from a ``litdata.StreamingDataset`` + ``StreamingDataLoader``: shuffled
per epoch, split across processes and machines by LitData, and resumable mid-epoch (the loader's state is
saved in Lightning's checkpoints).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from litdata import StreamingDataLoader, StreamingDataset

from mmfuse.data.batching import Questions, question_batch
from mmfuse.data.images import load_image
from mmfuse.data.resumable import batch_seed
from mmfuse.data.sources.prepared import FORMAT, META, fetch, is_remote, read_meta, split_dir
from mmfuse.data.transforms import augment
from mmfuse.errors import DataError

__all__ = ["FORMAT", "META", "StreamedSplit", "encode_item", "fetch", "is_remote", "read_bad", "read_meta", "split_dir"]


def encode_item(item: tuple[str, str, list[Any]], size: tuple[int, int], bad_dir: str,
                reduced: bool = True) -> dict[str, Any] | None:
    """The chunk item of one image ``(key, path, question ids)``: its pixels at ``size`` and its questions.
    An image that cannot be decoded gives None (LitData then writes nothing) and a line in ``bad_dir``.
    Runs in LitData's writer processes, so it lives in this light module."""
    key, path, question_ids = item
    try:
        pixels = load_image(path, question_ids[0], size, reduced)  # [3,H,W] uint8
    except DataError as e:
        with open(Path(bad_dir) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"key": key, "reason": str(e)}) + "\n")
        return None
    # no path-like strings in an item: LitData would store the file a string names instead of the string
    return {"pixels": pixels, "questions": json.dumps(question_ids)}


def read_bad(bad_dir: str) -> dict[str, str]:
    """image key -> reason, for every image :func:`encode_item` could not decode."""
    out: dict[str, str] = {}
    for f in sorted(Path(bad_dir).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            out[row["key"]] = row["reason"]
    return out


class StreamCollate:
    """A list of streamed items (one per image: ``pixels [3,H,W]`` uint8, ``questions``: JSON list of question
    ids) → the batch dict of the in-memory path, for the items' questions that are in ``row_of`` (questions
    left out of the split, e.g. by ``data.limit_questions``, are skipped)."""

    def __init__(self, questions: Questions, augment_ops: Sequence[str] = (), seed: int = 0) -> None:
        self.questions = questions
        # JSON object keys are strings: ids are matched in that form, as prediction files match them
        self.row_of = {str(r.question_id): i for i, r in enumerate(questions.records)}
        self.augment_ops, self.seed = list(augment_ops), int(seed)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        idx: list[int] = []
        image_index: list[int] = []
        pixels: list[torch.Tensor] = []
        for item in items:
            rows = [self.row_of[str(q)] for q in json.loads(item["questions"]) if str(q) in self.row_of]
            if rows:
                idx += rows
                image_index += [len(pixels)] * len(rows)
                pixels.append(item["pixels"])
        if not idx:
            return {"question_id": []}
        # the batch's draws seeded by its content: the same in any worker and after a resume (LitData restores
        # which items come next, not a generator that ran through the epoch in some worker)
        content = zlib.crc32(",".join(str(self.questions.records[i].question_id) for i in idx).encode())
        generator = torch.Generator().manual_seed(batch_seed(self.seed, 0, content))
        images = augment(torch.stack(pixels), self.augment_ops, generator)  # [U,3,H,W] uint8
        return question_batch(self.questions, idx, image_index, "image", images)


class EvenStreamingDataLoader(StreamingDataLoader):
    """A ``StreamingDataLoader`` that, given ``num_batches``, pads its epoch to that many batches by repeating its
    first ones (each marked ``"padding": True``)."""

    num_batches: int | None = None

    def __len__(self) -> int:
        return self.num_batches if self.num_batches is not None else super().__len__()

    def __iter__(self) -> Any:
        need = max(0, (self.num_batches or 0) - super().__len__())  # padding batches this process owes
        first: list[Any] = []
        for batch in super().__iter__():
            if len(first) < need:
                first.append(batch)
            yield batch
        for i in range(need):
            yield {**first[i % len(first)], "padding": True} if first else {"question_id": [], "padding": True}


class StreamedSplit:
    """One split of a prepared dataset: its questions, and a LitData loader of whole-image batches.

    Args:
        root: the prepared dataset (folder or URL).
        split: ``train``, ``val`` or ``test``.
        questions: the split's questions, tokenised (what :class:`~mmfuse.data.batching.QABatchDataset` holds).
        img_size: ``(H, W)`` the model expects; must be the size the dataset was prepared at.
        augment_ops: training augmentation of each batch's images.
        seed: shuffling (LitData's, per epoch) and augmentation seed.
    """

    def __init__(self, root: str, split: str, questions: Questions, img_size: tuple[int, int],
                 augment_ops: Sequence[str] = (), seed: int = 0) -> None:
        meta = read_meta(root)
        if tuple(meta["img_size"]) != tuple(img_size):
            raise DataError(f"{root} was prepared at {tuple(meta['img_size'])} px but the model takes "
                            f"{tuple(img_size)}: prepare it again at this size (tools/prepare_data.py)")
        self.root, self.split, self.questions, self.seed = str(root), split, questions, seed
        self.skipped = int(meta["splits"][split].get("skipped_questions", 0))  # bad images left out at prepare
        self.records = questions.records
        self.augment_ops = list(augment_ops)
        groups = {r.image_key for r in self.records}
        self.questions_per_image = len(self.records) / max(1, len(groups))

    def __len__(self) -> int:
        return len(self.records)

    def loader(self, batch_size: int, shuffle: bool, num_workers: int) -> Any:
        """A ``litdata.StreamingDataLoader`` of batches of about ``batch_size`` questions (whole images).

        LitData gives each process whole chunks, every image once (``drop_last=False``). DDP synchronises every
        forward pass, so in a distributed run each process pads its epoch to the longest process's number of
        batches by repeating its first batches (marked ``"padding": True``; at most about one chunk's images):
        training trains on them, evaluation runs them without scoring them."""
        dataset = StreamingDataset(split_dir(self.root, self.split), shuffle=shuffle, drop_last=False, seed=self.seed)
        images = max(1, round(batch_size / self.questions_per_image))
        collate = StreamCollate(self.questions, self.augment_ops if shuffle else (), self.seed)
        loader = EvenStreamingDataLoader(dataset, batch_size=images, num_workers=num_workers, collate_fn=collate,
                                         shuffle=shuffle, drop_last=False)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            longest = torch.tensor(len(loader))
            torch.distributed.all_reduce(longest, op=torch.distributed.ReduceOp.MAX)
            loader.num_batches = int(longest)
        return loader
