"""The datasets of a run and how their splits are formed: ``DatasetSpec`` (one per ``data.source`` or
``data.mixture`` entry), the validation split carved by image, and the media (image or video) of a split."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from mmfuse.data.schema import QARecord
from mmfuse.data.sources import load_records
from mmfuse.errors import DataError

log = logging.getLogger("mmfuse.data.datamodule")  # the datamodule's logger: its messages as before

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the run: ``data.source``/``root``/``train``/``val``/``test`` or one ``data.mixture`` entry.

    ``tasks`` None means every active task.
    """

    name: str
    source: str
    root: str | None = None
    train: Any = None
    val: Any = None
    test: Any = None
    val_fraction: float = 0.1
    tasks: tuple[str, ...] | None = None


def dataset_specs(data: Any) -> list[DatasetSpec]:
    """The datasets of a ``data`` config node: its ``mixture`` entries, else the single ``source``."""
    if not data.mixture:
        return [DatasetSpec(str(data.source), str(data.source), data.root, data.train, data.val, data.test,
                            float(data.val_fraction))]
    return [DatasetSpec(str(e["name"]), str(e["source"]), e.get("root"), e.get("train"), e.get("val"), e.get("test"),
                        float(data.val_fraction if e.get("val_fraction") is None else e["val_fraction"]),
                        tuple(e["tasks"]) if e.get("tasks") else None) for e in data.mixture]


def split_hash(image_key: str) -> int:
    """The split key of an image: the first 8 bytes of ``sha1(image_key)`` as an unsigned integer in
    ``[0, 2**64)``. Every by-image split (the carved validation split, cross-validation folds) derives from
    it, so assignments are independent of seed, order and machine, and never separate an image's questions."""
    return int.from_bytes(hashlib.sha1(image_key.encode()).digest()[:8], "big")


def carve_validation(records: list[QARecord], fraction: float) -> tuple[list[QARecord], list[QARecord]]:
    """Deterministic split of ``records`` into (train, val) *by image*: an image goes to
    validation iff ``split_hash(image_key) / 2**64 < fraction`` — independent of seed, order and machine,
    and no image is shared between the two."""
    train: list[QARecord] = []
    val: list[QARecord] = []
    for r in records:
        (val if split_hash(r.image_key) / 2**64 < fraction else train).append(r)
    return train, val


def media_of(records: list[QARecord], where: str) -> str:
    """The media of ``records`` (``image`` or ``video``); a split mixing both is a DataError."""
    kinds = {r.media for r in records}
    if len(kinds) > 1:
        first = {k: next(r for r in records if r.media == k) for k in sorted(kinds)}
        raise DataError(f"{where}: mixes images and videos (e.g. question_id {first['image'].question_id!r} is about "
                        f"an image, {first['video'].question_id!r} about a video); a split holds one kind")
    return kinds.pop() if kinds else "image"


def split_origin(spec: DatasetSpec, split: str) -> str:
    """Where a split's questions come from, for messages: its file, its source spec, or the source's own."""
    given = getattr(spec, split)
    if given is None:
        return f"data.source={spec.source}'s own {split} split"
    if isinstance(given, str):
        return given
    return ", ".join(f"{k}: {v}" for k, v in dict(given).items())


def check_carved(spec: DatasetSpec, records: list[QARecord], train: list[QARecord], val: list[QARecord]) -> None:
    """A DataError naming the training split, its size and ``val_fraction`` if carving ``records`` into
    (``train``, ``val``) left either side empty."""
    emptied = [name for name, part in (("train", train), ("val", val)) if records and not part]
    if emptied:
        images, fix = len({r.image_key for r in records}), "raise" if emptied[0] == "val" else "lower"
        raise DataError(
            f"dataset {spec.name!r}: carving a validation split from the training split "
            f"({split_origin(spec, 'train')}: {len(records)} questions on {images} images) with "
            f"val_fraction={spec.val_fraction} left the {emptied[0]} split empty; {fix} data.val_fraction or "
            "give data.val")


def load_split(have: dict[str, list[QARecord]], spec: DatasetSpec, split: str, required: bool,
               limit_questions: int | None, split_sizes: dict[tuple[str, str], int]) -> list[QARecord]:
    """``spec``'s ``split``, loaded into ``have`` (split -> records) once: a validation split is carved from
    train when the dataset has none; a missing optional split is empty; a required split that comes out
    empty is a DataError naming where it came from. With ``limit_questions``, every loaded split is cut and
    its full size kept in ``split_sizes[(dataset, split)]``."""
    if split not in have:
        if split in ("train", "val") and spec.val is None and _has_no_val(spec):
            train = load_records(spec.source, "train", spec.train, spec.root)
            have["train"], have["val"] = carve_validation(train, spec.val_fraction)
            check_carved(spec, train, have["train"], have["val"])
        else:
            try:
                have[split] = load_records(spec.source, split, getattr(spec, split), spec.root)
            except (DataError, ValueError, TypeError) as e:
                if required or split == "train":
                    raise
                log.info("dataset %r has no %s split (%s)", spec.name, split, e)
                have[split] = []
        if required and not have.get(split):
            raise DataError(f"dataset {spec.name!r}: the {split} split ({split_origin(spec, split)}) has no questions")
        if limit_questions is not None:
            for s in list(have):
                split_sizes[(spec.name, s)] = max(len(have[s]), split_sizes.get((spec.name, s), 0))
                have[s] = have[s][:limit_questions]
    return have[split]


def _has_no_val(spec: DatasetSpec) -> bool:
    try:
        load_records(spec.source, "val", None, spec.root)
    except (DataError, ValueError, TypeError):
        return True
    return False
