"""``prepare_data(cfg, output)``: write a dataset once as LitData optimized chunks for the streamed path.

Each split of ``cfg.data`` (validation carved from train as a run would) becomes ``output/<split>/``: one
item per image, its uint8 pixels decoded at the model's input size (the same decoder as the other paths:
JPEGs at reduced scale, then resized) and the ids of all of its questions; ``output/<split>.jsonl`` holds the
questions and ``output/prepared.json`` the size and counts (layout: :mod:`mmfuse.data.streaming`). A later
call with the same data config and image size reuses it. Train on it with ``data.source=prepared
data.root=<output>``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mmfuse.config import to_container
from mmfuse.data.images import group_by_image
from mmfuse.data.sources.prepared import record_to_json
from mmfuse.data.splits import SPLITS
from mmfuse.data.streaming import FORMAT, META, encode_item, read_bad
from mmfuse.errors import ConfigError, DataError
from mmfuse.evaluation.results import config_hash
from mmfuse.model import image_input_size
from mmfuse.runner import build_datamodule
from mmfuse.utils import write_json

log = logging.getLogger(__name__)
__all__ = ["prepare_data"]


def _data_hash(cfg: DictConfig, size: tuple[int, int]) -> str:
    data = to_container(cfg)["data"]
    keep = {k: data[k] for k in ("source", "root", "train", "val", "test", "val_fraction", "limit_questions",
                                 "jpeg_reduced")}
    return config_hash({"data": keep, "img_size": list(size), "format": FORMAT})


def prepare_data(cfg: DictConfig, output: str | Path, splits: Sequence[str] | None = None,
                 num_workers: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Write ``cfg.data``'s splits as LitData chunks into ``output``; returns the ``prepared.json`` content.

    Args:
        cfg: a config from :func:`mmfuse.load_config` (``data`` and ``model.image`` are read).
        output: a local folder (copy it to object storage to stream it from there).
        splits: the splits to write (default: every split the data has).
        num_workers: LitData's writer processes (default: the CPU count).
        overwrite: replace an existing prepared dataset made from another config or at another size.

    An image that cannot be decoded stops with its file and a question id, or, with
    ``data.skip_bad_records``, is left out with its questions (counted per split in ``prepared.json``).
    """
    from litdata import optimize

    if cfg.data.mixture:
        raise ConfigError("prepare_data writes one dataset: give data.source (not data.mixture)")
    if cfg.data.source == "prepared":
        raise ConfigError("data.source=prepared is already prepared; give the original source to prepare_data")
    out = Path(output)
    size = image_input_size(cfg.model)
    digest = _data_hash(cfg, size)
    meta_path = out / META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("data_hash") == digest and set(splits or meta["splits"]) <= set(meta["splits"]):
            log.info("reusing the prepared dataset at %s", out)
            return {**meta, "reused": True}
        if not overwrite:
            raise DataError(f"{out} holds a dataset prepared from another data config or image size "
                            f"({tuple(meta.get('img_size', ()))} px); choose another --output or pass --overwrite")
    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    dm = build_datamodule(cfg)
    start = time.perf_counter()
    done: dict[str, Any] = {}
    for split in splits or SPLITS:
        try:
            records = dm.split_records(split)
        except DataError as e:
            if splits:
                raise
            log.info("no %s split to prepare (%s)", split, e)
            continue
        if any(r.is_video for r in records):
            raise DataError(f"{split}: prepare_data writes images; video data streams from its files "
                            "(data.cache_images=false)")
        groups = group_by_image(records)
        items = [(key, path, qids) for key, (path, qids) in groups.items()]
        with tempfile.TemporaryDirectory() as bad_dir:
            optimize(fn=functools.partial(encode_item, size=size, bad_dir=bad_dir,
                                                      reduced=bool(cfg.data.jpeg_reduced)), inputs=items,
                     output_dir=str(out / split), chunk_bytes="64MB", num_workers=num_workers or os.cpu_count() or 1,
                     mode="overwrite", verbose=False)
            bad = read_bad(bad_dir)
        if bad and not cfg.data.skip_bad_records:
            shutil.rmtree(out / split, ignore_errors=True)
            raise DataError(next(iter(bad.values())) + " (set data.skip_bad_records=true to leave it out)")
        kept = [r for r in records if r.image_key not in bad]
        (out / f"{split}.jsonl").write_text("".join(record_to_json(r) + "\n" for r in kept), encoding="utf-8")
        done[split] = {"questions": len(kept), "images": len(groups) - len(bad),
                       "skipped_questions": len(records) - len(kept), "skipped_images": len(bad)}
    meta = {"format": FORMAT, "img_size": list(size), "data_hash": digest, "source": str(cfg.data.source),
            "splits": done, "seconds": round(time.perf_counter() - start, 1),
            "bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}
    write_json(meta_path, meta)
    return meta
