"""The rows of tools/benchmark_rl.py and what it writes from their results: the table (mean over seeds, range in
brackets, measured against the supervised start of the same seed) and the paired bootstrap interval between the
best two trained rows. A helper module beside that tool (imported as ``_rl_bench`` with tools/ on ``sys.path``)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

GROUP = 4  # answers per question of the group estimators
ROWS = {  # id (run folder, --only) -> (table label, overrides, G)
    "start": ("supervised start", [], 1),
    "gae": ("PPO+GAE λ=0.95, critic (G=1)", ["rl.advantage=gae", "rl.lam=0.95"], 1),
    "grpo": (f"GRPO (G={GROUP})", ["rl.advantage=grpo"], GROUP),
    "dr_grpo": (f"Dr. GRPO (G={GROUP})", ["rl.advantage=grpo", "rl.grpo_scale=false"], GROUP),
    "rloo": (f"RLOO (G={GROUP})", ["rl.advantage=rloo"], GROUP),
    "reinforce_pp": ("REINFORCE++ (G=1)", ["rl.advantage=reinforce_pp"], 1),
    "reinforce": ("REINFORCE, mean baseline", ["rl.algorithm=reinforce"], 1),
    "ppo": ("PPO, GAE λ=0.95", ["rl.lam=0.95"], 1),
    "ppo_lam0": ("PPO, GAE λ=0", ["rl.lam=0"], 1),
    "ppo_lam1": ("PPO, GAE λ=1", ["rl.lam=1"], 1),
}
DEFAULT_ROWS = ["start", "gae", "grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce"]
PAIRED = "paired_interval"  # the table.json entry that is not a run


def _span(values: list[float], fmt: str, unit: str = "") -> str:
    """Mean, and the range over seeds when there are several."""
    mean = format(statistics.fmean(values), fmt) + unit
    return mean if len(values) == 1 else f"{mean} ({format(min(values), fmt)}–{format(max(values), fmt)}{unit})"


def _closed(paired: list[tuple[dict, dict]], key: str, greedy: str) -> str:
    """Mean (range) over seeds of ``(r[key] - start[key]) / (start[greedy] - start[key])``, in %."""
    gaps = [(r[key] - s[key]) / (s[greedy] - s[key]) for r, s in paired
            if None not in (r.get(key), s.get(key), s.get(greedy)) and s[greedy] > s[key]]
    return _span([100 * g for g in gaps], ".0f", "%") if gaps else "n/a"


def advantage_share(metrics_csv: Path) -> float | None:
    """Median over the logged training steps of ``rl/advantage_ms / rl/step_ms`` in %: the estimator's share of a
    whole RL step (rollout, scoring, advantages and the PPO updates). None when the run logged no timing."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open(newline="") as f:
        shares = [100 * float(r["rl/advantage_ms"]) / float(r["rl/step_ms"]) for r in csv.DictReader(f)
                  if r.get("rl/advantage_ms") and r.get("rl/step_ms") and float(r["rl/step_ms"]) > 0]
    return statistics.median(shares) if shares else None


def _share(run: dict) -> float | None:
    """A run's advantage share; rows saved before the share was recorded read it from their own logs."""
    if "advantage_share" in run or run["id"] == "start" or not run.get("run_dir"):
        return run.get("advantage_share")
    return advantage_share(Path(run["run_dir"]) / "logs" / "metrics.csv")


def table(rows: list[dict], task: str = "easy_vqa") -> str:
    """One line per row id (mean over seeds, range in brackets). The gap closed and the greedy change of a seed
    are measured against the supervised start scored with the same seed; colour_order adds the mean reward of the
    greedy and of the sampled test answers and the reward gap closed (the same ratio on rewards)."""
    starts = {r["seed"]: r for r in rows if r["id"] == "start"}
    order = task == "colour_order"
    extra = " greedy reward | sampled reward | reward gap closed |" if order else ""
    lines = [f"| run | greedy acc | sampled acc (T=1) | gap closed | greedy change |{extra} KL to ref (nats/answer) "
             "| fit (min) | sampled answers/s | advantage time (% of step) |",
             "|---|---|---|---|---|" + "---|" * (3 * order) + "---|---|---|---|"]
    for row in ROWS:
        runs = [r for r in rows if r["id"] == row]
        if not runs:
            continue
        closed = change = rate = rcl = share = ""
        paired = [(r, starts[r["seed"]]) for r in runs if r["seed"] in starts]
        if row != "start" and paired:
            closed = _closed(paired, "sampled", "greedy")
            change = _span([r["greedy"] - s["greedy"] for r, s in paired], "+.2f")
            rcl = _closed(paired, "sampled_reward", "greedy_reward")
        if runs[0]["rollouts_per_s"]:
            rate = f"{statistics.median(r['rollouts_per_s'] for r in runs):.0f}"
        shares = [x for x in map(_share, runs) if x is not None]
        if shares:
            share = _span(shares, ".2f", "%")
        cells = ""
        if order:
            rewards = [[r[k] for r in runs if r.get(k) is not None] for k in ("greedy_reward", "sampled_reward")]
            cells = "".join(f" {_span(v, '.3f') if v else 'n/a'} |" for v in rewards) + f" {rcl} |"
        lines.append(f"| {runs[0]['name']} | {_span([r['greedy'] for r in runs], '.2f')} "
                     f"| {_span([r['sampled'] for r in runs], '.2f')} | {closed} | {change} |{cells} "
                     f"{_span([r['kl'] for r in runs], '.3f')} "
                     f"| {statistics.fmean(r['fit_seconds'] for r in runs) / 60:.1f} | {rate} | {share} |")
    return "\n".join(lines) + "\n"


def _sampled_scores(run_dir: str, field: str) -> dict[str, float] | None:
    path = Path(run_dir) / "eval_test" / "sampled_answers.json"
    if not path.is_file():
        return None
    return {str(a["question_id"]): float(a[field]) for a in json.loads(path.read_text()) if a.get(field) is not None}


def paired(rows: list[dict], task: str = "easy_vqa", resamples: int = 1000) -> dict | None:
    """The best two trained rows by mean sampled accuracy (colour_order: mean sampled reward) compared on the
    seeds both have: each question's sampled score (reward) averaged over those seeds, then the paired bootstrap
    of best − second over the questions both scored (points). None with fewer than two such rows."""
    from mmfuse.evaluation.bootstrap import paired_bootstrap

    key, field, what = (("sampled_reward", "reward", "sampled reward") if task == "colour_order"
                        else ("sampled", "score", "sampled accuracy"))
    means = {row: statistics.fmean(v) for row in ROWS if row != "start"
             if (v := [r[key] for r in rows if r.get("id") == row and r.get(key) is not None])}
    if len(means) < 2:
        return None
    best, second = sorted(means, key=lambda k: -means[k])[:2]
    runs = {row: {r["seed"]: r for r in rows if r.get("id") == row} for row in (best, second)}
    seeds = sorted(set(runs[best]) & set(runs[second]))
    out: dict[str, Any] = {"id": PAIRED, "seed": None, "metric": what, "best": best, "second": second,
                           "seeds": seeds}
    per_row: dict[str, dict[str, float]] = {}
    for row in (best, second):
        scores = [_sampled_scores(runs[row][s]["run_dir"], field) for s in seeds]
        if not seeds or any(s is None for s in scores):
            return {**out, "note": f"no eval_test/sampled_answers.json in a run of {row!r} (re-run it)"}
        shared = set.intersection(*(set(s) for s in scores if s is not None))
        per_row[row] = {q: statistics.fmean(s[q] for s in scores if s is not None) for q in shared}
    qids = sorted(set(per_row[best]) & set(per_row[second]))
    if not qids:
        return {**out, "note": "the two rows share no scored question"}
    iv, p = paired_bootstrap([per_row[second][q] for q in qids], [per_row[best][q] for q in qids],
                             resamples=resamples)
    return {**out, "diff": 100 * iv.estimate, "ci": [100 * iv.low, 100 * iv.high], "level": iv.level, "p": p,
            "questions": len(qids)}


def paired_line(pair: dict | None) -> str:
    if pair is None:
        return ""
    names = {k: ROWS[pair[k]][0] for k in ("best", "second")}
    head = f"Best two rows by mean {pair['metric']}: {names['best']} vs {names['second']}"
    if "note" in pair:
        return f"{head}: {pair['note']}.\n"
    return (f"{head}: {pair['diff']:+.2f} points [{pair['ci'][0]:+.2f}, {pair['ci'][1]:+.2f}] "
            f"({100 * pair['level']:.0f}% paired bootstrap over {pair['questions']} questions, each averaged over "
            f"seeds {', '.join(map(str, pair['seeds']))}; p = {pair['p']:.3f}).\n")
