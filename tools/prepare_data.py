#!/usr/bin/env python
"""Write a dataset once as LitData chunks (images at the model's input size + their questions) for the
streamed path, then train on it with ``data.source=prepared data.root=<output>``.

    python tools/prepare_data.py --config configs/experiments/easy_vqa.yaml --output data/prepared/easy_vqa_64
    python tools/prepare_data.py --config my_vqav2.yaml --output /data/vqav2_224 --workers 16 [key=value ...]

The data and the image size come from the config (``data.*``, ``model.image.*``). A second call with the same
data config and size reuses the folder; ``--overwrite`` replaces one made otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mmfuse
from mmfuse.cli import run_tool


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=[], help="experiment YAML (repeatable; merged in order)")
    p.add_argument("--output", required=True, help="folder to write (copy it to s3:// or gs:// to stream from there)")
    p.add_argument("--splits", nargs="*", default=None, help="default: every split the data has")
    p.add_argument("--workers", type=int, default=None, help="writer processes (default: the CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset prepared from another config")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    try:
        cfg = mmfuse.load_config(args.config, args.overrides)
        meta = mmfuse.prepare_data(cfg, args.output, args.splits, args.workers, args.overwrite)
    except mmfuse.MmfuseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = "x".join(str(s) for s in meta["img_size"])
    print(f"{'reused' if meta.get('reused') else 'prepared'} {args.output} at {size} px"
          f" ({meta['bytes'] / 2**20:.1f} MiB, {meta['seconds']:.0f} s):")
    for split, n in meta["splits"].items():
        skipped = f", skipped {n['skipped_questions']} question(s) of {n['skipped_images']} bad image(s)" \
            if n["skipped_images"] else ""
        print(f"  {split}: {n['questions']} questions on {n['images']} images{skipped}")
    print(f"train with: data.source=prepared data.root={args.output}")
    print(json.dumps({"prepared.json": str(Path(args.output) / "prepared.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
