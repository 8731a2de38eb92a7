"""Batches that encode each image once: a sampler that packs whole images (with all their
questions) and a dataset indexed by *lists* of question indices that collates a whole batch.

Because the sampler yields one list per batch, Lightning's distributed sampler wrapper
splits batches across processes unchanged (each rank gets whole batches)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterator, Sequence, Sized
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Sampler

from mmfuse.data.resumable import SeededBatch
from mmfuse.data.schema import QARecord
from mmfuse.data.transforms import augment
from mmfuse.errors import ConfigError, DataError


class GroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of question indices.

    Args:
        groups: question indices of each image (one list per image).
        batch_size: target number of questions per batch.
        shuffle: reshuffle images (and questions within a plain batch) every epoch.
        group_by_image: pack whole images (``≈ batch_size / mean questions per image`` images a
            batch, so every epoch has exactly the same number of batches); False samples
            questions independently.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        curriculum: ``(epochs, questions)`` stages in order (``data.curriculum``): for its ``epochs`` a stage
            trains only on ``questions`` (indices). The epoch's batches are drawn as without it, then each keeps
            only the stage's questions, so every epoch has the same number of batches (smaller ones during a
            stage); a batch left with none keeps all its questions. After the stages, every question.
    """

    def __init__(self, groups: Sequence[Sequence[int]], batch_size: int, shuffle: bool,
                 group_by_image: bool = True, seed: int = 0,
                 curriculum: Sequence[tuple[int, Collection[int]]] = ()) -> None:
        self.groups = [list(g) for g in groups if len(g)]
        self.shuffle, self.group_by_image, self.seed = shuffle, group_by_image, seed
        self.curriculum = [(int(n), frozenset(keep)) for n, keep in curriculum]
        self.num_questions = sum(len(g) for g in self.groups)
        self.batch_size = batch_size
        mean_q = self.num_questions / max(1, len(self.groups))
        self.images_per_batch = max(1, round(batch_size / mean_q))
        self.epoch = 0

    @classmethod
    def of_dataset(cls, ds: QABatchDataset, batch_size: int, train: bool, group_by_image: bool, seed: int,
                   curriculum: Sequence[Any] = ()) -> GroupedBatchSampler:
        """The sampler over ``ds``'s images (its questions grouped by image row), shuffled when ``train``, with
        ``data.curriculum`` stages (:func:`curriculum_stages`)."""
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(ds.image_rows):
            groups.setdefault(r, []).append(i)
        return cls(list(groups.values()), batch_size, shuffle=train, group_by_image=group_by_image, seed=seed,
                   curriculum=curriculum_stages(curriculum, ds.records))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.group_by_image:
            return math.ceil(len(self.groups) / self.images_per_batch)
        return math.ceil(self.num_questions / self.batch_size)

    def stage_questions(self, epoch: int) -> frozenset[int] | None:
        """The questions the curriculum stage of ``epoch`` trains on; None after the stages (every question)."""
        end = 0
        for epochs, keep in self.curriculum:
            end += epochs
            if epoch < end:
                return keep
        return None

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1  # a fresh order next epoch even if nobody calls set_epoch
        keep = self.stage_questions(epoch)
        for batch in self._batches(torch.Generator().manual_seed(self.seed + epoch)):
            # a stage filters batches, never redraws them: the epoch keeps its length (Lightning counts it once)
            kept = batch if keep is None else [q for q in batch if q in keep]
            yield kept or batch

    def _batches(self, g: torch.Generator) -> Iterator[list[int]]:
        if self.group_by_image:
            order = torch.randperm(len(self.groups), generator=g).tolist() if self.shuffle else range(len(self.groups))
            order = list(order)
            for s in range(0, len(order), self.images_per_batch):
                yield [q for i in order[s:s + self.images_per_batch] for q in self.groups[i]]
        else:
            flat = [q for grp in self.groups for q in grp]
            if self.shuffle:
                flat = [flat[i] for i in torch.randperm(len(flat), generator=g).tolist()]
            for s in range(0, len(flat), self.batch_size):
                yield flat[s:s + self.batch_size]


def curriculum_stages(stages: Sequence[Any], records: Sequence[QARecord]) -> list[tuple[int, list[int]]]:
    """``data.curriculum`` (``[{epochs, question_types}]``) as :class:`GroupedBatchSampler` stages over
    ``records`` (the training split): ``(epochs, indices of the stage's questions)``. A question type with no
    training question is a :class:`~mmfuse.errors.ConfigError` naming the types present."""
    present = {str(r.question_type) for r in records}
    out = []
    for i, stage in enumerate(stages):
        missing = [t for t in stage["question_types"] if t not in present]
        if missing:
            raise ConfigError(f"config key 'data.curriculum[{i}].question_types' has {missing} with no training "
                              f"question; question types of the training split: {', '.join(sorted(present))}")
        keep = set(stage["question_types"])
        out.append((int(stage["epochs"]), [j for j, r in enumerate(records) if r.question_type in keep]))
    return out


class Questions:
    """A split's questions in the form batches need: the records, tokenised questions (lists of ids, no
    padding) and sparse soft targets ``[(answer index, score)]``, with the answer-vocabulary size and the
    padding id."""

    def __init__(self, records: Sequence[QARecord], input_ids: Sequence[Sequence[int]] | Sequence[Any],
                 targets: Sequence[Sequence[tuple[int, float]]], num_answers: int, pad_id: int) -> None:
        self.records, self.input_ids, self.targets = records, input_ids, targets
        self.num_answers, self.pad_id = num_answers, pad_id


def question_batch(q: Questions, idx: Sequence[int], image_index: Sequence[int], visual_key: str,
                   visuals: Tensor) -> dict[str, Any]:
    """The batch dict of questions ``idx`` (positions in ``q``) whose images are the rows ``image_index [B]``
    of ``visuals`` (``[U,3,H,W]`` images or ``[U,T,3,H,W]`` clips, under ``visual_key``): padded token ids
    and mask ``[B,L]``, dense soft targets ``[B,V]`` and the raw fields the metrics read."""
    rows = [np.asarray(q.input_ids[i], dtype=np.int64) for i in idx]
    lengths = np.array([len(r) for r in rows])  # [B]
    valid = np.arange(lengths.max()) < lengths[:, None]  # [B,L] True at real tokens
    ids = np.full(valid.shape, q.pad_id, dtype=np.int64)
    ids[valid] = np.concatenate(rows)  # row-major fill: each row's tokens, then its padding
    target = torch.zeros((len(idx), q.num_answers))  # [B,V]
    pairs = [(b, a, s) for b, i in enumerate(idx) for a, s in q.targets[i]]
    if pairs:
        b_, a_, s_ = zip(*pairs)
        target[list(b_), list(a_)] = torch.tensor(s_, dtype=target.dtype)
    recs = [q.records[i] for i in idx]
    return {
        "text": {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(valid.astype(np.int64))},
        visual_key: visuals,
        "image_index": torch.as_tensor(list(image_index), dtype=torch.long),  # [B]
        "targets": {"vqa": target},
        "question_id": [r.question_id for r in recs],
        "question": [r.question for r in recs],
        "answers": [list(r.answers) for r in recs],
        "answer_type": [r.answer_type for r in recs],
        "question_type": [r.question_type for r in recs],
    }



def as_is(batch: Any) -> Any:
    """The DataLoader's collate for batches the dataset already built (module level: workers pickle it)."""
    return batch

class QABatchDataset(Dataset):
    """Indexed by a list of question indices; returns the collated batch dict.

    Args:
        records: the split's questions.
        image_rows: for each record, its row in ``images`` (a cached ``[I,3,H,W]`` uint8
            tensor) — or None with ``load_image`` given for lazy loading.
        input_ids: tokenised questions (lists of ids, no padding).
        targets: sparse soft targets ``[(answer index, score)]`` per record.
        num_answers: vocabulary size (width of the dense target).
        pad_id: padding token id.
        augment_ops: augmentation names applied to the batch's unique images (to every frame of a
            video alike).
        load_image: ``(record) -> uint8 [3,H,W]`` used when images are not cached (the lazy path).
        skip_bad: lazy path: an image that fails to decode (corrupt past its header) drops its questions
            from this batch, listed in the batch's ``"dropped"`` (question ids) for the run to count;
            False: the :class:`~mmfuse.errors.DataError` (file and question id) stops the run.
        videos: a :class:`~mmfuse.data.video_store.VideoStore` whose rows are ``image_rows``: the batch
            then carries ``video [U,T,3,H,W]`` (clips drawn with this dataset's generator) instead of
            ``image``.
    """

    def __init__(self, records: Sequence[QARecord], images: Tensor | None, image_rows: Sequence[int],
                 input_ids: Sequence[Sequence[int]], targets: Sequence[Sequence[tuple[int, float]]],
                 num_answers: int, pad_id: int, augment_ops: Sequence[str] = (), load_image: Any = None,
                 seed: int = 0, videos: Any = None, skip_bad: bool = False) -> None:
        self.records, self.images, self.image_rows = records, images, list(image_rows)
        self.skip_bad = skip_bad
        self.questions = Questions(records, input_ids, targets, num_answers, pad_id)
        self.augment_ops, self.load_image, self.videos = list(augment_ops), load_image, videos
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, idx: list[int]) -> tuple[list[int], dict[int, Tensor], list[Any]]:
        """Lazy path: the batch's images decoded once each; with ``skip_bad``, the questions of an image
        that fails are dropped. Returns (kept question indices, image row -> [3,H,W], dropped question ids)."""
        first = {self.image_rows[i]: i for i in reversed(idx)}
        decoded: dict[int, Tensor] = {}
        for row in sorted(first):
            try:
                decoded[row] = self.load_image(self.records[first[row]])
            except DataError:
                if not self.skip_bad:
                    raise
        kept = [i for i in idx if self.image_rows[i] in decoded]
        dropped = [self.records[i].question_id for i in idx if self.image_rows[i] not in decoded]
        return kept, decoded, dropped

    def __getitem__(self, idx: list[int]) -> dict[str, Any]:
        if isinstance(idx, PaddingBatch):
            return {**self[list(idx)], "padding": True}
        # a training batch carries its own seed (same batch, same draws: in any worker, after any resume)
        generator = idx.generator() if isinstance(idx, SeededBatch) else self.generator
        decoded: dict[int, Tensor] = {}
        dropped: list[Any] = []
        if self.videos is None and self.images is None:
            idx, decoded, dropped = self._decode(idx)
            if not idx:
                return {"question_id": [], "dropped": dropped}  # every image of the batch was unreadable
        rows = [self.image_rows[i] for i in idx]
        uniq = sorted(set(rows))
        pos = {r: j for j, r in enumerate(uniq)}
        visual_key = "image"
        if self.videos is not None:
            clips = self.videos.clips(uniq, generator)  # [U,T,3,H,W] uint8
            u, t, c, h, w = clips.shape
            # frames stacked as channels: one flip / rotation per video, the same on all its frames
            images = augment(clips.reshape(u, t * c, h, w), self.augment_ops, generator).reshape(u, t, c, h, w)
            visual_key = "video"
        else:
            # [U,3,H,W] uint8: cached rows, or this batch's decoded images
            images = self.images[uniq] if self.images is not None else torch.stack([decoded[r] for r in uniq])
            images = augment(images, self.augment_ops, generator)
        batch = question_batch(self.questions, idx, [pos[r] for r in rows], visual_key, images)
        return {**batch, "dropped": dropped} if dropped else batch


class PaddingBatch(list):
    """The question indices of a batch given only to keep the processes in step: its batch dict says
    ``"padding": True``, and evaluation neither scores nor predicts it."""


class EvalShardSampler(DistributedSampler):
    """Process ``rank`` of ``num_replicas`` takes every ``num_replicas``-th batch of ``sampler``, starting at its
    rank: every batch exactly once across the processes. DDP synchronises every forward pass, so all processes
    must run as many batches: those with fewer end with repeats of their first batch, as
    :class:`PaddingBatch` es, which evaluation runs but neither scores nor predicts (``DistributedSampler``'s
    padding would count those questions twice). A ``DistributedSampler`` subclass, so Lightning does not
    wrap it again."""

    def __init__(self, sampler: Sampler[list[int]], num_replicas: int, rank: int) -> None:
        # no super().__init__: that wants a dataset; this shards whole batches of ``sampler``
        self.sampler, self.num_replicas, self.rank = sampler, num_replicas, rank
        self.epoch, self.shuffle, self.drop_last = 0, False, False

    def __iter__(self) -> Iterator[list[int]]:  # yields batches, not indices
        mine = list(itertools.islice(iter(self.sampler), self.rank, None, self.num_replicas))
        first = next(iter(self.sampler), [])  # the run's first batch pads a process that got none
        pad = mine[0] if mine else first
        return iter(mine + [PaddingBatch(pad)] * (len(self) - len(mine)))

    def __len__(self) -> int:
        return math.ceil(len(cast(Sized, self.sampler)) / self.num_replicas)
