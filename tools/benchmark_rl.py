#!/usr/bin/env python
"""The RL benchmark of the README: a supervised answer generator (stage 1), then every advantage estimator
fine-tuning it (stage 2) at an equal budget of sampled answers, each scored greedy and sampled on the test split.

    python tools/benchmark_rl.py [--task easy_vqa | colour_order] [--init <stage-1 best .ckpt>] [--seeds 0 1 2]
                                 [--output runs/bench_rl/<task>] [--only ID ...] [--batches N] [--rerun]
                                 [key=value ...]

Tasks: ``easy_vqa`` (noisy-annotator easy-VQA, one-word answers, reward vqa_accuracy; stage 1
configs/experiments/easy_vqa_noisy_generator.yaml, stage 2 easy_vqa_rl.yaml) and ``colour_order`` (Sort-of-CLEVR's
six-colour order with noisy annotators, reward position_accuracy; sort_of_clevr_order_generator.yaml and
sort_of_clevr_order_rl.yaml; the order files are written first with tools/make_sort_of_clevr.py when the data
folders have none: data/sort_of_clevr for stage 1, data/sort_of_clevr_rl, the same seed with 60,000 training
images, for the RL rollouts). Without ``--init`` stage 1 is trained first (once: a later call reuses it).

Rows (``--only``; default: start, gae, grpo, dr_grpo, rloo, reinforce_pp, reinforce): the supervised start (no RL
step), PPO+GAE with the critic (``gae``, λ=0.95), GRPO, Dr. GRPO (``rl.grpo_scale=false``), RLOO, REINFORCE++ and
plain REINFORCE (one policy-gradient step per rollout batch, batch-mean baseline); ``ppo``, ``ppo_lam0``,
``ppo_lam1`` (PPO+GAE at λ 0.95 / 0 / 1) on request, as tables written before the estimators still hold them.

Equal budget: every trained row samples the same number of answers per rollout batch and runs the same number of
rollout batches, hence the same number of PPO optimiser steps on minibatches of the same size. The group estimators
(grpo, dr_grpo, rloo) sample G=4 answers for each of ``data.batch_size / 4`` questions; the G=1 rows (gae,
reinforce_pp, reinforce, ppo*) one answer for each of ``data.batch_size`` questions. Every row stops after N
rollout batches (``trainer.limit_train_batches``), N being the G=1 rows' batches in one epoch (``--batches``, a
``trainer.limit_train_batches=N`` override, the config's own integer ``trainer.limit_train_batches``, or counted
from the training split). Why this way round: the number of
updates and the answers per update are the same, so a row differs from another only in how its answers are spread
over questions and how the advantage is computed; the group rows see a quarter of the questions, which is what G
answers per question cost. (Whole images are packed into batches, so a batch holds about ``data.batch_size``
questions: easy-VQA's ~9.6 questions an image make the answers per batch equal to within one image; colour_order
has one question an image.) Each run's ``table.json`` entry records ``G``, ``questions_per_batch``, ``batches`` and
``sampled_answers`` (their product, nominal).

Each row is one ``tools/train.py`` run per seed, printed before it starts. Writes ``<output>/table.md`` (mean over
seeds, range in brackets; the paired interval between the best two rows under it), ``table.json`` (every run, and
an ``id: paired_interval`` entry), ``rl_curves.png`` and ``score_vs_answers.png`` (the first seed's curves).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _rl_bench import DEFAULT_ROWS, GROUP, PAIRED, ROWS, advantage_share, paired, paired_line, table  # beside this tool
from bench_common import REPO, add_seeds_arg, add_sweep_args, run_logged, split_only, sweep

sys.path.insert(0, str(REPO))
TASKS = {  # --task -> (stage-1 config, stage-2 config)
    "easy_vqa": ("configs/experiments/easy_vqa_noisy_generator.yaml", "configs/experiments/easy_vqa_rl.yaml"),
    "colour_order": ("configs/experiments/sort_of_clevr_order_generator.yaml",
                     "configs/experiments/sort_of_clevr_order_rl.yaml"),
}
ORDER_NOISE = "0.3"  # configs/data/sort_of_clevr_order.yaml: make_sort_of_clevr.py --colour-order --noisy 0.3
ORDER_RL_TRAIN = 60000  # sort_of_clevr_order_rl.yaml's data.root: the same seed with 60,000 training images


class Budget:
    """``data.batch_size`` (the G=1 rows' questions per batch) and N (rollout batches of every row), worked out
    on first use: a call that only reads finished rows back never loads the config or the data."""

    def __init__(self, config: str, init: str, overrides: list[str], batches: int | None,
                 prepare: Callable[[], None] = lambda: None) -> None:
        self.config, self.init, self.overrides, self.batches = config, init, overrides, batches
        self.prepare = prepare  # run first: what the data needs (colour_order: its files written)
        self._value: tuple[int, int] | None = None

    def get(self) -> tuple[int, int]:
        if self._value is None:
            from mmfuse.config import load_config

            self.prepare()

            cfg = load_config(self.config, [f"rl.init_from={self.init}", *self.overrides])
            base = int(cfg.data.batch_size)
            if base % GROUP:
                raise SystemExit(f"data.batch_size={base}: the group rows take data.batch_size / {GROUP} questions "
                                 f"a batch; expected a multiple of {GROUP}")
            limit = [o.split("=", 1)[1] for o in self.overrides if o.startswith("trainer.limit_train_batches=")]
            n = self.batches
            if n is None and not limit and isinstance(cfg.trainer.limit_train_batches, int):
                limit = [str(cfg.trainer.limit_train_batches)]  # the config's own (colour_order RL: 39)
            if n is None and limit:
                if not limit[-1].isdigit():
                    raise SystemExit(f"trainer.limit_train_batches={limit[-1]}: every row runs the same number of "
                                     "rollout batches; give an integer, or use --batches N")
                n = int(limit[-1])
            self._value = (base, n if n is not None else epoch_batches(cfg))
            print(f"budget: {self._value[1]} rollout batches a row, {base} sampled answers a batch", flush=True)
        return self._value


def epoch_batches(cfg: Any) -> int:
    """Training batches in one epoch at ``data.batch_size`` (the G=1 rows): the data module's own sampler
    (whole images packed per batch) over the training split's records."""
    from mmfuse.data.batching import GroupedBatchSampler
    from mmfuse.data.datamodule import VQADataModule

    records = VQADataModule(cfg.data, seed=int(cfg.seed)).split_records("train")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.image_key, []).append(i)
    return len(GroupedBatchSampler(list(groups.values()), int(cfg.data.batch_size), shuffle=True,
                                   group_by_image=bool(cfg.data.group_by_image)))


def ensure_order_data(config: str, overrides: list[str], train: int | None = None) -> None:
    """Write the colour_order files (tools/make_sort_of_clevr.py --colour-order --noisy 0.3) when the config's
    data folder has none. An existing folder keeps its seed and sizes (``summary.json``), so its twenty-question
    files are rewritten byte-identical; a new one gets the tool's defaults, ``train`` training images if given."""
    from mmfuse.config import load_config

    # only the data folder is read: an RL stage's required checkpoint is a placeholder here
    cfg = load_config(config, ["rl.init_from=(unread).ckpt", *overrides])
    root = Path(str(cfg.data.root))
    root = root if root.is_absolute() else REPO / root
    if (root / str(cfg.data.train)).is_file():
        return
    cmd = [sys.executable, "tools/make_sort_of_clevr.py", "--output", str(root), "--colour-order", "--noisy",
           ORDER_NOISE]
    if (root / "summary.json").is_file():
        summary = json.loads((root / "summary.json").read_text())
        cmd += ["--seed", str(summary["seed"]), *[x for s in ("train", "val", "test")
                                                 for x in (f"--{s}", str(summary["splits"][s]["images"]))]]
    elif train is not None:
        cmd += ["--train", str(train)]
    if root.is_dir() and any(root.iterdir()):
        cmd.append("--overwrite")
    run_logged(cmd, "writing the colour_order data")


def run_row(row: str, seed: int, config: str, init: str, out: Path, extra: list[str], budget: Budget) -> dict:
    name, overrides, g = ROWS[row]
    run_dir = out / row / f"seed{seed}"
    base, n = budget.get()
    trained = row != "start"
    # after the shared overrides: the budget is what makes the rows comparable
    fixed = ([f"rl.samples_per_question={g}", f"data.batch_size={base // g}", f"trainer.limit_train_batches={n}"]
             if trained else ["trainer.limit_train_batches=0"])
    cmd = [sys.executable, "tools/train.py", "--config", config, f"rl.init_from={init}", *overrides, f"seed={seed}",
           f"run_dir={run_dir}", "trainer.enable_progress_bar=false", *extra, *fixed]
    shown = run_logged(cmd, f"row {name!r} seed {seed}")
    m = json.loads((run_dir / "metrics.json").read_text())
    test = m["test"]
    return {"id": row, "name": name, "seed": seed, "command": shown, "run_dir": str(run_dir),
            "greedy": 100 * test["test/answer_generation/acc"], "sampled": 100 * test["test/sampled/acc"],
            "kl": test["test/kl"], "fit_seconds": m["fit_seconds"],
            "greedy_reward": test.get("test/greedy/reward"), "sampled_reward": test.get("test/sampled/reward"),
            "G": g, "questions_per_batch": base // g, "batches": n if trained else 0,
            "sampled_answers": n * base if trained else 0,
            # sampled answers per second of training batches: rollout, scoring and the updates together
            "rollouts_per_s": m["train_samples_per_s"] * g if trained else None,
            "advantage_share": advantage_share(run_dir / "logs" / "metrics.csv") if trained else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=list(TASKS), default="easy_vqa")
    p.add_argument("--init", default=None, help="stage-1 checkpoint (default: train it first)")
    p.add_argument("--output", default=None, help="default: runs/bench_rl/<task>")
    p.add_argument("--batches", type=int, default=None,
                   help="rollout batches of every row (default: the G=1 rows' batches in one epoch)")
    add_seeds_arg(p, "RL seeds (rollout sampling, minibatch order)")
    p.add_argument("--only", nargs="*", default=None,
                   help=f"row ids to run (default {' '.join(DEFAULT_ROWS)}); all: {', '.join(ROWS)}")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every RL row")
    add_sweep_args(p)
    args = p.parse_args(argv)
    split_only(p, args, ROWS)
    if args.batches is not None and args.batches < 1:
        p.error(f"--batches {args.batches}: expected an integer >= 1")
    supervised, config = TASKS[args.task]
    out = Path(args.output or f"runs/bench_rl/{args.task}")
    out.mkdir(parents=True, exist_ok=True)
    init = args.init
    sup_dir = out / "stage1"
    stage1 = [o for o in args.overrides if not o.startswith("rl.")]
    if init is None and (sup_dir / "metrics.json").is_file() and not args.rerun:
        init = json.loads((sup_dir / "metrics.json").read_text())["best_checkpoint"]
        print(f"stage 1: done, {init} (--rerun trains it again)", flush=True)
    def prepare() -> None:
        if args.task == "colour_order":
            ensure_order_data(supervised, stage1)
            ensure_order_data(config, stage1, train=ORDER_RL_TRAIN)  # the RL rollouts' questions (its own root)

    if init is None:
        prepare()
        run_logged([sys.executable, "tools/train.py", "--config", supervised, f"run_dir={sup_dir}",
                    "trainer.enable_progress_bar=false", *stage1], "stage 1")
        init = json.loads((sup_dir / "metrics.json").read_text())["best_checkpoint"]
    budget = Budget(config, init, args.overrides, args.batches, prepare)
    signature = [f"init={init}", *args.overrides, *([f"batches={args.batches}"] if args.batches else []),
                 *([f"task={args.task}"] if args.task != "easy_vqa" else [])]
    rows = sweep(out, list(ROWS), args.seeds, args.only or DEFAULT_ROWS,
                 lambda row, seed: run_row(row, seed, config, init, out, args.overrides, budget),
                 lambda rs: table(rs, args.task), signature=signature, rerun=args.rerun)
    runs = [r for r in rows if r.get("id") != PAIRED]
    pair = paired(runs, args.task)
    (out / "table.json").write_text(json.dumps(runs + ([pair] if pair else []), indent=2))
    (out / "table.md").write_text(table(runs, args.task) + ("\n" + paired_line(pair) if pair else ""))
    print(paired_line(pair), end="", flush=True)
    from mmfuse.viz.rl import write_rl_curves, write_score_vs_answers

    first = min(args.seeds)
    trained = [r for r in runs if r["id"] != "start" and r["seed"] == first]
    if trained:
        print("curves:", write_rl_curves({r["name"]: r["run_dir"] for r in trained}, out / "rl_curves.png"))
        spent = {r["name"]: (r["run_dir"], r["G"] * r["questions_per_batch"]) for r in trained if "G" in r}
        print("score vs sampled answers:", write_score_vs_answers(spent, out / "score_vs_answers.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
