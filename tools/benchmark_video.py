#!/usr/bin/env python
"""The video-QA benchmark of the README: temporal poolings compared per question type on the procedural set.

    python tools/benchmark_video.py [--data data/video_qa] [--seeds 0 1 2] [--output runs/bench_video]
                                    [--only ID ...] [--rerun] [key=value ...]

Generates the data first (tools/make_video_qa.py defaults) when ``--data`` holds none. Rows: one frame
(T=1), ``mean``, ``attention``, ``attention`` with time embeddings, ``temporal_transformer`` and the same with each
frame's vector a linear map of its patch tokens (``model.image.pool=flatten``), each one
``tools/train.py --config configs/experiments/video_qa.yaml`` run per seed, printed before it starts.
Writes ``<output>/table.md`` (test VQA accuracy per question type, mean over seeds with the range) and
``table.json`` (every run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench_common import REPO, add_seeds_arg, add_sweep_args, run_logged, split_only, sweep

CONFIG = "configs/experiments/video_qa.yaml"
ROWS = {  # id (run folder, --only) -> (table label, overrides)
    "single_frame": ("one frame (T=1)", ["data.video.num_frames=1", "model.video.pooling=mean"]),
    "mean": ("mean", ["model.video.pooling=mean"]),
    "attention": ("attention", ["model.video.pooling=attention"]),
    "attention_time": ("attention + time embeddings",
                       ["model.video.pooling=attention", "model.video.hparams.time_embeddings=true"]),
    "temporal_transformer": ("temporal_transformer", ["model.video.pooling=temporal_transformer"]),
    "temporal_transformer_flatten": ("temporal_transformer, frames flattened",
                                     ["model.video.pooling=temporal_transformer", "model.image.pool=flatten"]),
    "temporal_transformer_sincos": ("temporal_transformer, sin-cos positions",
                                    ["model.video.pooling=temporal_transformer", "model.image.pos_embed=sincos"]),
}
TIME_TYPES = ("direction", "order", "colour_change", "count")  # need more than one frame
FRAME_TYPES = ("colour", "shape")  # any single frame answers them


def run_row(row: str, seed: int, data: Path, out: Path, extra: list[str]) -> dict:
    name, overrides = ROWS[row]
    run_dir = out / row / f"seed{seed}"
    cmd = [sys.executable, "tools/train.py", "--config", CONFIG, f"data.root={data}", *overrides, f"seed={seed}",
           f"run_dir={run_dir}", "trainer.enable_progress_bar=false", *extra]
    shown = run_logged(cmd, f"row {name!r} seed {seed}")
    m = json.loads((run_dir / "metrics.json").read_text())
    acc = m["test_accuracy"]
    return {"id": row, "name": name, "seed": seed, "command": shown, "run_dir": str(run_dir),
            "overall": acc["overall"], "per_question_type": acc["perQuestionType"], "fit_seconds": m["fit_seconds"],
            "samples_per_s": m["train_samples_per_s"]}


def _span(values: list[float]) -> str:
    mean = f"{statistics.fmean(values):.1f}"
    return mean if len(values) == 1 else f"{mean} ({min(values):.1f}–{max(values):.1f})"


def table(rows: list[dict]) -> str:
    """Test VQA accuracy (%) per question type; mean over seeds, range in brackets."""
    types = [*TIME_TYPES, *FRAME_TYPES]
    lines = ["| pooling | " + " | ".join(types) + " | overall | fit (min) |", "|---" * (len(types) + 3) + "|"]
    for row in ROWS:
        runs = [r for r in rows if r["id"] == row]
        if not runs:
            continue
        cells = [_span([r["per_question_type"].get(t, float("nan")) for r in runs]) for t in types]
        lines.append(f"| {runs[0]['name']} | " + " | ".join(cells) + f" | {_span([r['overall'] for r in runs])} "
                     f"| {statistics.fmean(r['fit_seconds'] for r in runs) / 60:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/video_qa", help="the benchmark's folder (generated when missing)")
    p.add_argument("--output", default="runs/bench_video")
    add_seeds_arg(p)
    p.add_argument("--only", nargs="*", default=None, help=f"row ids to run (default all): {', '.join(ROWS)}")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every row")
    add_sweep_args(p)
    args = p.parse_args(argv)
    split_only(p, args, ROWS)
    data = (REPO / args.data).resolve() if not Path(args.data).is_absolute() else Path(args.data)
    if not (data / "train.jsonl").is_file():
        run_logged([sys.executable, "tools/make_video_qa.py", "--out", str(data)], "data generation")
    out = Path(args.output)
    sweep(out, list(ROWS), args.seeds, args.only, lambda row, seed: run_row(row, seed, data, out, args.overrides),
          table, signature=args.overrides, rerun=args.rerun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
