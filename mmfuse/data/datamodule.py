"""``VQADataModule``: sources → ``QARecord`` s → answer vocabulary / tokenizer → tensors.

Everything the model needs to be built (answer vocabulary, tokenizer) is ready after
:meth:`VQADataModule.prepare`, before any batch exists."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mmfuse.data.batching import GroupedBatchSampler, QABatchDataset
from mmfuse.data.images import load_image, load_images
from mmfuse.data.schema import QARecord
from mmfuse.data.sources import DataError, load_records
from mmfuse.data.tokenizer import build_tokenizer
from mmfuse.data.transforms import resize_uint8
from mmfuse.data.vocab import AnswerVocab

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def carve_validation(records: list[QARecord], fraction: float) -> tuple[list[QARecord], list[QARecord]]:
    """Deterministic split of ``records`` into (train, val) *by image*: an image goes to
    validation iff ``sha1(image_key) < fraction`` — independent of seed, order and machine,
    and no image is shared between the two."""
    def is_val(key: str) -> bool:
        h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big")
        return h / 2**64 < fraction

    train, val = [], []
    for r in records:
        (val if is_val(r.image_key) else train).append(r)
    return train, val


class VQADataModule(L.LightningDataModule):
    """Lightning data module for VQA-style data from any registered source.

    Args:
        data: the ``data`` config node.
        img_size: ``(H, W)`` the image encoder expects (may be set after construction, once
            the model exists: the vocabulary and tokenizer do not depend on it).
        text_pretrained: pretrained text model (its tokenizer is used), or None to train one.
        tokenizer_vocab_size: WordPiece vocabulary size when training a tokenizer.
        run_dir: where the vocabulary and tokenizer are saved (None: not saved).
        seed: seed of the sampler and augmentation.
        vocab, tokenizer: reuse these (evaluation) instead of building them from train.
    """

    def __init__(self, data: DictConfig, img_size: Optional[tuple[int, int]] = None, text_pretrained: Optional[str] = None,
                 tokenizer_vocab_size: int = 1000, run_dir: Optional[Path] = None, seed: int = 0,
                 vocab: Optional[AnswerVocab] = None, tokenizer: Any = None) -> None:
        super().__init__()
        self.cfg, self.seed = data, seed
        self.img_size = tuple(img_size) if img_size is not None else None  # set before building tensors
        self.text_pretrained, self.tokenizer_vocab_size = text_pretrained, tokenizer_vocab_size
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.vocab, self.tokenizer = vocab, tokenizer
        self.records: dict[str, list[QARecord]] = {}
        self.datasets: dict[str, QABatchDataset] = {}
        self.skipped: dict[str, int] = {}

    # -- records, vocabulary, tokenizer ------------------------------------------------------
    def split_records(self, split: str) -> list[QARecord]:
        """Records of ``split``, with validation carved from train when the source has none."""
        if split not in self.records:
            c = self.cfg
            if split in ("train", "val") and c.val is None and self._has_no_val():
                train = load_records(c.source, "train", c.train, c.root)
                self.records["train"], self.records["val"] = carve_validation(train, c.val_fraction)
            else:
                self.records[split] = load_records(c.source, split, c[split], c.root)
            for s in list(self.records):
                if c.limit_questions is not None:
                    self.records[s] = self.records[s][: c.limit_questions]
        return self.records[split]

    def _has_no_val(self) -> bool:
        try:
            load_records(self.cfg.source, "val", None, self.cfg.root)
        except (DataError, ValueError, TypeError):
            return True
        return False

    def prepare(self) -> None:
        """Build the answer vocabulary and tokenizer from the training split (saved to run_dir)."""
        if self.vocab is None:
            av = self.cfg.answer_vocab
            self.vocab = AnswerVocab.from_records(self.split_records("train"), av.top_k, av.min_count)
            if self.run_dir is not None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.vocab.save(self.run_dir / "answers.json")
        if self.tokenizer is None:
            questions = None if self.text_pretrained else [r.question for r in self.split_records("train")]
            save = self.run_dir / "tokenizer" if self.run_dir is not None else None
            self.tokenizer = build_tokenizer(self.text_pretrained, questions, self.tokenizer_vocab_size, save)

    # -- tensors ------------------------------------------------------------------------------
    def _build(self, split: str) -> QABatchDataset:
        if self.vocab is None or self.tokenizer is None or self.img_size is None:
            raise RuntimeError("VQADataModule: call prepare() and set img_size before building tensors")
        c = self.cfg
        records = self.split_records(split)
        images, bad = load_images(records, skip_bad=bool(c.skip_bad_records))
        if bad:
            dropped = {k.image_key for k in bad}
            before = len(records)
            records = [r for r in records if r.image_key not in dropped]
            self.skipped[split] = before - len(records)
            log.warning("%s: skipped %d question(s) with %d unreadable image(s), e.g. %s",
                        split, self.skipped[split], len(bad), bad[0].reason)
            self.records[split] = records
        if not records:
            raise DataError(f"split {split!r} of source {c.source!r} has no usable questions")
        keys = sorted(images)
        row = {k: i for i, k in enumerate(keys)}
        if c.cache_images:
            stacked = torch.stack([resize_uint8(images[k], self.img_size) for k in keys])  # [I,3,H,W]
            loader = None
        else:
            stacked, loader = None, lambda r: resize_uint8(load_image(r.image, r.question_id), self.img_size)
        del images
        enc = self.tokenizer([r.question for r in records], truncation=True,
                             max_length=c.max_question_length, add_special_tokens=True)
        targets = [self.vocab.soft_target(r) for r in records]
        return QABatchDataset(
            records, stacked, [row[r.image_key] for r in records], enc["input_ids"], targets,
            len(self.vocab), int(self.tokenizer.pad_token_id or 0),
            augment_ops=list(c.augment) if split == "train" else [], load_image=loader, seed=self.seed,
        )

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", SPLITS):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self._build(split)
        ds, c = self.datasets[split], self.cfg
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(ds.image_rows):
            groups.setdefault(r, []).append(i)
        train = split == "train"
        sampler = GroupedBatchSampler(list(groups.values()), c.batch_size if train else c.eval_batch_size,
                                      shuffle=train, group_by_image=bool(c.group_by_image), seed=self.seed)
        # batch_size=None: the sampler yields whole batches (lists), the dataset collates them.
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=c.num_workers,
                          persistent_workers=c.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def loader(self, split: str) -> DataLoader:
        """Evaluation loader of any split (no shuffling, no augmentation)."""
        return self._loader(split)

    def types(self, field: str) -> list[str]:
        """All answer or question types in the loaded splits (metrics need them up front)."""
        return sorted({getattr(r, field) for recs in self.records.values() for r in recs
                       if getattr(r, field) is not None})
