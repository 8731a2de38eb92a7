#!/usr/bin/env python
"""Write the Sort-of-CLEVR benchmark (Santoro et al. 2017): 75x75 images of six coloured squares and
circles, with 10 non-relational and 10 relational questions per image.

    python tools/make_sort_of_clevr.py [--output data/sort_of_clevr] [--seed 0] [--train 9800 --val 1000 --test 1000]

The defaults write 9,800 / 1,000 / 1,000 images, i.e. 196,000 / 20,000 / 20,000 questions (20 per
image), about 60 MB, in about a minute. Files: images/<split>/<i>.png, <split>.jsonl (the JSONL record
format), scenes_<split>.jsonl (every object's colour, shape, centre and size) and summary.json; the
same seed writes byte-identical files. Train on them with configs/experiments/sort_of_clevr.yaml.
See mmfuse/data/sort_of_clevr.py for the exact recipe.

Opt-in sequence task for the answer generator and RL (--colour-order): order_<split>.jsonl, one question
per image, "what are the colors of the objects from left to right?", answered by the six colour words
ordered by centre x (equal x: the upper object first), question_type colour_order, answer_type sequence.
Every other file stays byte-identical. --noisy P gives each such question --annotators answers (default
10), round(P * annotators) of them with one adjacent pair of colours swapped (noisy annotators, as the
easy_vqa_noisy source). Stage 1 / stage 2: configs/experiments/sort_of_clevr_order_generator.yaml and
sort_of_clevr_order_rl.yaml (reward position_accuracy), e.g.

    python tools/make_sort_of_clevr.py --colour-order --noisy 0.3 [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmfuse.cli import run_tool
from mmfuse.data.sort_of_clevr import ANNOTATORS, QUESTIONS_PER_KIND
from mmfuse.data.sort_of_clevr_files import write_sort_of_clevr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="data/sort_of_clevr", help="output folder, the config's data.root "
                   "(default: data/sort_of_clevr)")
    p.add_argument("--seed", type=int, default=0, help="non-negative integer (default: 0)")
    per = 2 * QUESTIONS_PER_KIND
    p.add_argument("--train", type=int, default=9800, help=f"training images, {per} questions each (default: 9800)")
    p.add_argument("--val", type=int, default=1000, help=f"validation images, {per} questions each (default: 1000)")
    p.add_argument("--test", type=int, default=1000, help=f"test images, {per} questions each (default: 1000)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty output folder, replacing the files this tool writes there")
    p.add_argument("--colour-order", action="store_true",
                   help="also write order_<split>.jsonl: one colour_order question per image (the colours from "
                   "left to right, 6 words); the other files are unchanged")
    p.add_argument("--noisy", type=float, default=None, metavar="P",
                   help="with --colour-order: give each order question --annotators answers, the share P in [0, 1] "
                   "of them with one adjacent pair swapped (default: one clean answer)")
    p.add_argument("--annotators", type=int, default=ANNOTATORS,
                   help=f"answers per order question with --noisy (default: {ANNOTATORS})")
    args = p.parse_args(argv)

    def progress(split: str, done: int, total: int) -> None:
        if done == total or done % 2000 == 0:
            print(f"  {split}: {done}/{total} images", flush=True)

    out = Path(args.output)
    summary = write_sort_of_clevr(out, {"train": args.train, "val": args.val, "test": args.test}, seed=args.seed,
                                  overwrite=args.overwrite, progress=progress, colour_order=args.colour_order,
                                  noise=args.noisy, annotators=args.annotators)
    for split, s in summary["splits"].items():
        types = ", ".join(f"{k} {v}" for k, v in s["per_question_type"].items())
        print(f"{split}: {s['images']} images in {out / 'images' / split}, {s['questions']} questions in "
              f"{out / (split + '.jsonl')} ({types}), scenes in {out / f'scenes_{split}.jsonl'}")
    if "colour_order" in summary:
        order = summary["colour_order"]
        for split, s in order["splits"].items():
            print(f"{split}: {s['questions']} colour_order questions in {out / f'order_{split}.jsonl'} "
                  f"({order['annotators']} answers each, {s['corrupted_answers']} corrupted)")
    print(json.dumps({"output": str(out.resolve()), "seed": args.seed}))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
