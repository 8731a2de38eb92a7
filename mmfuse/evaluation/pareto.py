"""The trade-off between two tasks: a static loss-weight sweep, its Pareto front, adaptive weightings.

Weight convention: the static run ``static_w<w>`` trains ``w·L_A + (1 − w)·L_B``, i.e.
``tasks.<A>.weight = w`` and ``tasks.<B>.weight = 1 − w`` with ``loss.weighting = static``;
w is therefore the share of task A. Each strategy run (``uncertainty``, ``dwa``, ...) keeps the
configured task weights and sets only ``loss.weighting``. Every run gets its own folder under the
output folder and is reused when its ``metrics.json`` exists (a completed run) and was trained with
the same config (``config_hash``), so an interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from mmfuse.config import load_config, to_container
from mmfuse.errors import RunFailed, StaleRun
from mmfuse.evaluation.results import config_hash
from mmfuse.objectives.multitask import list_weightings, weighting_options
from mmfuse.tasks import list_tasks
from mmfuse.training import train
from mmfuse.utils import write_json
from mmfuse.viz.figures import DPI

# Set per run by the sweep; a user override of these would be silently replaced, so it is refused.
RESERVED_KEYS = ("run_dir", "tasks.active", "loss.weighting")
STRATEGY_MARKERS = ("s", "^", "D", "P", "X", "v", "*")


@dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: its folder name, weighting and the overrides that make it."""

    name: str
    weighting: str
    overrides: tuple[str, ...]


def _dominates(p: Sequence[float], q: Sequence[float]) -> bool:
    return p[0] >= q[0] and p[1] >= q[1] and (p[0] > q[0] or p[1] > q[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, both coordinates maximised, sorted by the first.

    p dominates q when p ≥ q in both coordinates and p > q in at least one. Equal copies do not
    dominate each other, so every copy of a front point is kept (ties broken by index). Raises
    ValueError on a non-finite coordinate (a NaN would be neither dominated nor dominating).
    """
    for i, p in enumerate(points):
        if len(p) != 2 or not all(math.isfinite(float(v)) for v in p):
            raise ValueError(f"point {i} is {p!r}; expected two finite numbers")
    front = [i for i, p in enumerate(points) if not any(_dominates(q, p) for q in points)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1], i))


def check_request(tasks: Sequence[str], weights: Sequence[float], strategies: Sequence[str],
                  overrides: Sequence[str] = ()) -> None:
    """Raise ValueError unless the sweep is well formed (two known tasks, weights in (0, 1), ...)."""
    known, weightings = list_tasks(), list_weightings()
    if len(tasks) != 2 or tasks[0] == tasks[1]:
        raise ValueError(f"--tasks needs exactly two distinct tasks, got {list(tasks)}; valid: {', '.join(known)}")
    for t in tasks:
        if t not in known:
            raise ValueError(f"unknown task {t!r}; valid tasks: {', '.join(known)}")
    if not weights:
        raise ValueError("--weights is empty")
    for w in weights:
        if not 0.0 < w < 1.0:  # w = 0 or 1 switches a task off: not a two-task run
            raise ValueError(f"weight {w:g} is not strictly between 0 and 1")
    if len({_num(w) for w in weights}) != len(weights):
        raise ValueError(f"--weights repeats a value: {[_num(w) for w in weights]}")
    for s in strategies:
        if s not in weightings:
            raise ValueError(f"unknown loss weighting {s!r}; valid: {', '.join(weightings)}")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"--strategies repeats a value: {list(strategies)}")
    for o in overrides:
        if o.split("=", 1)[0].strip() in RESERVED_KEYS:
            raise ValueError(f"override {o!r} is set by the sweep itself ({', '.join(RESERVED_KEYS)})")


def parse_weights(text: str) -> list[float]:
    """``"0.1,0.5,0.9"`` → ``[0.1, 0.5, 0.9]``; ValueError naming a bad item."""
    out = []
    for item in text.split(","):
        try:
            out.append(float(item))
        except ValueError:
            raise ValueError(f"--weights item {item.strip()!r} is not a number") from None
    return out


def _num(x: float) -> str:
    """Fixed-point text without float noise (1 − 0.9 → "0.1"): YAML reads "1e-05" as a string."""
    return f"{x:.10f}".rstrip("0").rstrip(".") or "0"


def plan_runs(task_a: str, task_b: str, weights: Sequence[float], strategies: Sequence[str]) -> list[RunSpec]:
    """The static runs (one per w, in the given order), then one run per strategy."""
    runs = [RunSpec(f"static_w{_num(w)}", "static", ("loss.weighting=static", f"tasks.{task_a}.weight={_num(w)}",
                                                     f"tasks.{task_b}.weight={_num(1 - w)}")) for w in weights]
    return runs + [RunSpec(s, s, (f"loss.weighting={s}",)) for s in strategies]


def run_config(paths: Sequence[str | Path], overrides: Sequence[str], spec: RunSpec, tasks: Sequence[str],
               run_dir: Path) -> DictConfig:
    """The validated config of one run.

    ``loss.options`` (config file, merged with ``loss.options...=`` overrides) is filtered to the keys
    the run's weighting takes, so one option set (dwa's temperature, gradnorm's alpha) serves a mixed
    sweep; the option overrides are held back from the first load, which checks them against the
    config's own weighting.
    """
    is_opt = [o.split("=", 1)[0].strip().startswith("loss.options") for o in overrides]
    rest = [o for o, opt in zip(overrides, is_opt) if not opt]
    active = f"tasks.active=[{','.join(tasks)}]"
    base = load_config(list(paths), [*rest, active])
    given = OmegaConf.from_dotlist([o for o, opt in zip(overrides, is_opt) if opt]).get("loss", {}).get("options", {})
    options = to_container(cast(DictConfig, OmegaConf.merge(base.loss.options, given)))
    valid = weighting_options(spec.weighting)
    options = {k: v for k, v in options.items() if k in valid}
    return load_config(list(paths), [*rest, active, *spec.overrides, f"run_dir={run_dir}",
                                            f"loss.options={json.dumps(options)}"])


def _finished(run_dir: Path, cfg: DictConfig, name: str) -> dict[str, Any] | None:
    """The stored result of a completed run with the same config, else None; StaleRun if it differs."""
    path = run_dir / "metrics.json"
    if not path.is_file():  # train() writes metrics.json last: a crashed run has none and is retrained
        return None
    stored = json.loads(path.read_text())
    if stored.get("config_hash") != config_hash(to_container(cfg)):
        raise StaleRun(f"run {name!r} in {run_dir} was trained with a different config; "
                       "pass --force to retrain it or choose another --output")
    return stored


def sweep(paths: Sequence[str | Path], overrides: Sequence[str], tasks: Sequence[str], weights: Sequence[float],
          strategies: Sequence[str], output: Path, force: bool = False) -> dict[str, Any]:
    """Train (or reuse) every run, then write ``pareto.json`` and ``pareto.png`` into ``output``.

    Returns the content of ``pareto.json``. Every run's config is built first, so a bad override
    fails (ConfigError) before any training; RunFailed names the first run that failed.
    """
    check_request(tasks, weights, strategies, overrides)
    task_a, task_b = tasks
    specs = plan_runs(task_a, task_b, weights, strategies)
    cfgs = [run_config(paths, overrides, spec, tasks, Path(output) / spec.name) for spec in specs]
    title = f"{task_a} vs {task_b} — {cfgs[0].name} ({', '.join(Path(p).name for p in paths)})"
    rows: list[dict[str, Any]] = []
    for spec, cfg in zip(specs, cfgs):
        run_dir = Path(output) / spec.name
        result = None if force else _finished(run_dir, cfg, spec.name)
        reused = result is not None
        if result is None:
            try:
                result = train(cfg)
            except Exception as e:  # any failure: stop the sweep, saying which run it was
                raise RunFailed(f"run {spec.name!r} ({run_dir}) failed: {type(e).__name__}: {e}") from e
        got = result.get("test_tasks", {})
        missing = [t for t in tasks if t not in got]
        if missing:
            raise RunFailed(f"run {spec.name!r} ({run_dir}) reported no test accuracy for {missing}; got {sorted(got)}")
        rows.append({"name": spec.name, "weighting": spec.weighting, "reused": reused,
                     "weights": {t: float(cfg.tasks[t].weight) for t in tasks},
                     "metrics": {t: float(got[t]) for t in tasks},
                     "wall_seconds": float(result["wall_seconds"]), "run_dir": str(run_dir)})
    static = [i for i, r in enumerate(rows) if r["weighting"] == "static" and r["name"].startswith("static_w")]
    pts = [(r["metrics"][task_a], r["metrics"][task_b]) for r in rows]
    front = [static[i] for i in pareto_front([pts[i] for i in static])]
    for i, r in enumerate(rows):  # strategy runs: on/above the static front = no static run dominates them
        r["on_static_front"] = i in front if i in static else not any(_dominates(pts[j], pts[i]) for j in static)
    out = {"tasks": [task_a, task_b], "config": [str(p) for p in paths], "overrides": list(overrides),
           "convention": f"static_w<w>: tasks.{task_a}.weight = w, tasks.{task_b}.weight = 1 - w",
           "rows": rows, "front": front, "front_all": pareto_front(pts)}
    write_json(Path(output) / "pareto.json", out)
    plot_pareto(rows, task_a, task_b, Path(output) / "pareto.png", title=title)
    return out


def plot_pareto(rows: Sequence[Mapping[str, Any]], task_a: str, task_b: str, path: Path | str,
                title: str = "") -> Path:
    """Accuracy of B against A in percent: static runs annotated with w, the front of the static sweep
    as a line, each strategy run as its own marker (filled when no static run dominates it)."""
    fig = Figure(figsize=(7.0, 5.5), layout="constrained")
    ax = fig.add_subplot()
    static = [r for r in rows if r["weighting"] == "static" and r["name"].startswith("static_w")]
    xy = [(100 * r["metrics"][task_a], 100 * r["metrics"][task_b]) for r in static]
    if static:
        ax.scatter(*zip(*xy), color="#4c72b0", zorder=3, label=f"static weights (w = weight of {task_a})")
        labels: dict[tuple[float, float], list[str]] = {}
        for r, p in zip(static, xy):  # one label per position: equal results would print over each other
            labels.setdefault(p, []).append(f"{r['weights'][task_a]:g}")
        for p, ws in labels.items():
            ax.annotate(f"w={', '.join(ws)}", p, textcoords="offset points", xytext=(5, 5), fontsize=8)
        front = [xy[i] for i in pareto_front(xy)]
        ax.plot(*zip(*front), color="#4c72b0", alpha=0.6, zorder=2, label="Pareto front of the static sweep")
    for k, r in enumerate(r for r in rows if r not in static):
        x, y = 100 * r["metrics"][task_a], 100 * r["metrics"][task_b]
        on = bool(r.get("on_static_front"))
        color = f"C{(k + 1) % 10}"
        ax.scatter([x], [y], marker=STRATEGY_MARKERS[k % len(STRATEGY_MARKERS)], s=70, zorder=4, color=color,
                   facecolors=color if on else "none",
                   label=r["name"] + (" (not dominated by static)" if on else " (dominated by static)"))
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, -11), fontsize=8, color=color)
    ax.set_xlabel(f"{task_a} test accuracy (%)")
    ax.set_ylabel(f"{task_b} test accuracy (%)")
    ax.set_title(title or f"{task_a} vs {task_b}")
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    ax.legend(fontsize=8, loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    return path


def format_table(result: Mapping[str, Any]) -> str:
    """One line per run: weights, both accuracies in percent, wall time, front membership."""
    a, b = result["tasks"]
    head = (f"{'run':<16} {'weighting':<12} {'w_' + a:>12} {'w_' + b:>12} {a + ' %':>14} {b + ' %':>14} "
            f"{'wall s':>8}  front  reused")
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        mark = "*" if r["on_static_front"] else ""
        lines.append(f"{r['name']:<16} {r['weighting']:<12} {r['weights'][a]:>12g} {r['weights'][b]:>12g} "
                     f"{100 * r['metrics'][a]:>14.2f} {100 * r['metrics'][b]:>14.2f} {r['wall_seconds']:>8.1f}  "
                     f"{mark:<5}  {'yes' if r['reused'] else ''}".rstrip())
    lines.append("front: * = on the Pareto front of the static sweep (strategy runs: no static run dominates it)")
    return "\n".join(lines)
