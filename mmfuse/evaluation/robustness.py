"""Robustness to a broken modality (MultiBench, Liang et al. 2021, §3): accuracy against the level of a corruption
of one modality's input, its area, and the accuracy with a modality missing.

* **Relative robustness** of a curve (accuracy ``a_i`` in % at levels ``l_0 < … < l_n``): the trapezoid area
  under it divided by the level range, ``RR = Σ_i (l_{i+1} − l_i)·(a_i + a_{i+1})/2 / (l_n − l_0)``: in accuracy
  units, the curve's mean height (a curve flat at 80% has RR 80, whatever the levels). One level: its accuracy.
* **Effective robustness** against a baseline curve over the same levels: the row's area minus the area of the
  baseline's curve shifted vertically to the row's clean accuracy, ``ER = RR_row − (RR_base + (acc0_row −
  acc0_base))``, where ``acc0`` is the clean (uncorrupted) accuracy. It asks how much better the row resists the
  corruption than the baseline once their clean accuracies are equalised (MultiBench §3's effective robustness,
  after Taori et al. 2020, "Measuring robustness to natural distribution shifts"); 0 for the baseline itself.

The corruptions themselves (seeded, level 0 = identity) are :mod:`mmfuse.data.corrupt`; :class:`CorruptBatches`
applies one to every test batch; :func:`robustness_results` runs the passes (through a callable the entry
point supplies, so this room never builds a trainer) and gathers the ``metrics.json`` blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L

from mmfuse.data.corrupt import CORRUPTIONS, MISSING, BatchCorruption, check_level, check_spec
from mmfuse.errors import ConfigError
from mmfuse.metrics.scoring import official_aggregate, official_sum

log = logging.getLogger(__name__)
__all__ = ["CONVENTION", "DEFAULT_LEVELS", "CorruptBatches", "RobustnessRequest", "effective_robustness",
           "format_robustness", "level_accuracy", "parse_levels", "relative_robustness", "robustness_results"]

DEFAULT_LEVELS = tuple(i / 10 for i in range(11))  # 0, 0.1, ..., 1
CONVENTION = {
    "relative_robustness": "trapezoid area under accuracy (%) vs level over the levels given, divided by the level "
                           "range (the curve's mean height, in accuracy units); one level: its accuracy",
    "effective_robustness": "RR_row - (RR_baseline + (clean_row - clean_baseline)): the row's area minus the "
                            "baseline curve's shifted to the row's clean accuracy (MultiBench sec. 3, after "
                            "Taori et al. 2020)",
    "determinism": "each image / question seeded by (seed, spec, image key / question id); draws shared by all "
                   "levels; level 0 is the identity",
    "missing_image": "every pixel set to the model's normalisation mean (normalises to zero: no signal)",
    "missing_text": "the empty question: [CLS] [SEP]",
}


def parse_levels(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0,0.1,0.5"`` (or numbers) → sorted levels in [0, 1]. Raises ConfigError naming the bad value."""
    items = [s.strip() for s in text.split(",") if s.strip()] if isinstance(text, str) else list(text)
    levels = []
    for item in items:
        try:
            levels.append(check_level(float(item)))
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"--levels: {item!r} is not a number; expected levels in [0, 1] like 0,0.1,0.5") from None
    if not levels:
        raise ConfigError("--levels: no level given; expected levels in [0, 1] like 0,0.1,0.5")
    if len(set(levels)) != len(levels):
        raise ConfigError(f"--levels: a level is listed twice in {text!r}")
    return tuple(sorted(levels))


@dataclass(frozen=True)
class RobustnessRequest:
    """What to measure: a curve per ``corrupt`` spec over ``levels``, and one pass per ``missing`` modality;
    every draw seeded from ``seed`` (None: ``eval.bootstrap.seed``)."""

    corrupt: tuple[str, ...] = ()
    levels: tuple[float, ...] = DEFAULT_LEVELS
    missing: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def parse(cls, corrupt: Sequence[str] = (), levels: str | Sequence[float] | None = None,
              missing: Sequence[str] = (), seed: int | None = None) -> RobustnessRequest:
        """Checked arguments (``tools/evaluate.py``'s flags). Raises ConfigError naming the valid choices."""
        if levels is not None and not corrupt:
            raise ConfigError("--levels needs --corrupt SPEC (one of " + ", ".join(CORRUPTIONS) + ")")
        for m in missing:
            if m not in MISSING:
                raise ConfigError(f"--missing {m!r}: unknown modality; choose from {', '.join(MISSING)}")
        specs = tuple(check_spec(s) for s in corrupt)
        if len(set(specs)) != len(specs) or len(set(missing)) != len(missing):
            raise ConfigError("--corrupt / --missing: a spec is given twice")
        return cls(specs, DEFAULT_LEVELS if levels is None else parse_levels(levels), tuple(missing), seed)

    def __bool__(self) -> bool:
        return bool(self.corrupt or self.missing)


def relative_robustness(levels: Sequence[float], accuracy: Sequence[float]) -> float:
    """The trapezoid area under ``accuracy`` over ``levels`` (ascending) divided by the level range."""
    if len(levels) != len(accuracy) or not levels:
        raise ValueError(f"relative_robustness: {len(levels)} levels but {len(accuracy)} accuracies")
    if len(levels) == 1:
        return float(accuracy[0])
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"relative_robustness: levels must be strictly ascending, got {list(levels)}")
    area = sum((l1 - l0) * (a0 + a1) / 2 for l0, l1, a0, a1 in zip(levels, levels[1:], accuracy, accuracy[1:]))
    return area / (levels[-1] - levels[0])


def effective_robustness(rr_row: float, clean_row: float, rr_base: float, clean_base: float) -> float:
    """``RR_row − (RR_base + (clean_row − clean_base))``: see the module."""
    return rr_row - (rr_base + (clean_row - clean_base))


def level_accuracy(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Official accuracy (%) of scored rows, overall and per answer type, computed exactly as
    :func:`mmfuse.evaluation.results.summarize` does (so level 0 can equal the plain evaluation to the digit)."""
    scored = [r for r in rows if r["score"] is not None]
    if not scored:
        return {"overall": None, "per_answer_type": {}}
    groups: dict[str, list[float]] = {}
    for r in scored:
        if r["answer_type"] is not None:
            groups.setdefault(r["answer_type"], []).append(r["score"])
    scores = [r["score"] for r in scored]
    return {"overall": official_aggregate(official_sum(scores), len(scores)),
            "per_answer_type": {t: official_aggregate(official_sum(s), len(s)) for t, s in sorted(groups.items())}}


class CorruptBatches(L.Callback):
    """Applies a :class:`~mmfuse.data.corrupt.BatchCorruption` to every test batch (on the batch dict Lightning
    then hands to ``test_step``), after it reached the device."""

    def __init__(self, corruption: BatchCorruption) -> None:
        self.corruption = corruption

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self.corruption(batch)


Pass = Callable[[str, float], Sequence[Mapping[str, Any]]]  # (spec, level) -> scored rows of that pass


def robustness_results(request: RobustnessRequest, run_pass: Pass, clean: Mapping[str, Any]) -> dict[str, Any]:
    """The ``robustness`` and ``missing`` blocks of ``metrics.json``.

    ``run_pass(spec, level)`` evaluates the split with that corruption (``missing:<modality>`` for a missing one)
    and returns its scored rows; ``clean`` is the plain evaluation's ``accuracy`` (``summarize``'s). Level 0 is the
    identity for every spec, so it is evaluated once (through the corruption path) and shared by the curves; a
    level-0 accuracy that differs from the plain evaluation's is logged (a non-deterministic model or kernel).
    """
    clean_overall = clean.get("overall")
    out: dict[str, Any] = {"robustness": {}, "missing": {}, "robustness_convention": dict(CONVENTION)}
    identity: dict[str, Any] | None = None
    for spec in request.corrupt:
        points = []
        for level in request.levels:
            if level == 0 and identity is not None:
                points.append(identity)
                continue
            acc = level_accuracy(run_pass(spec, level))
            if level == 0:
                identity = acc
                if acc["overall"] != clean_overall:
                    log.warning("level 0 (no corruption) scored %s%% but the plain evaluation %s%%: the model or a "
                                "kernel is not deterministic", acc["overall"], clean_overall)
            points.append(acc)
        curve = [p["overall"] for p in points]
        types = sorted({t for p in points for t in p["per_answer_type"]})
        out["robustness"][spec] = {
            "levels": list(request.levels), "accuracy": curve,
            "per_answer_type": {t: [p["per_answer_type"].get(t) for p in points] for t in types},
            "relative_robustness": None if None in curve else relative_robustness(request.levels, curve),
            "clean_accuracy": clean_overall,
        }
    for modality in request.missing:
        acc = level_accuracy(run_pass(f"missing:{modality}", 1.0))
        drop = None if acc["overall"] is None or clean_overall is None else round(clean_overall - acc["overall"], 2)
        out["missing"][modality] = {"accuracy": acc["overall"], "per_answer_type": acc["per_answer_type"],
                                    "drop": drop}
    return out


def format_robustness(metrics: Mapping[str, Any]) -> str:
    """The printed table: per spec its accuracy (%) at each level and its relative robustness; then each missing
    modality's accuracy and its drop from the clean accuracy. ``""`` when nothing was measured."""
    lines = []
    blocks = metrics.get("robustness") or {}
    if blocks:
        levels = sorted({lv for b in blocks.values() for lv in b["levels"]})
        width = max(len("corruption"), *(len(s) for s in blocks)) + 2
        lines.append(f"{'corruption':<{width}}" + "".join(f"{lv:>8.2f}" for lv in levels) + f"{'RR':>9}")
        for spec, b in blocks.items():
            at = dict(zip(b["levels"], b["accuracy"]))
            cells = "".join(f"{at[lv]:>8.2f}" if at.get(lv) is not None else f"{'':>8}" for lv in levels)
            rr = b["relative_robustness"]
            lines.append(f"{spec:<{width}}{cells}{'' if rr is None else f'{rr:9.2f}'}")
        lines.append("accuracy (%) per corruption level; RR: relative robustness = area under the curve / level range")
    for modality, m in (metrics.get("missing") or {}).items():
        if m["accuracy"] is not None:
            drop = "" if m["drop"] is None else f" ({0.0 - m['drop']:+.2f} points vs clean)"
            lines.append(f"missing {modality}: {m['accuracy']:.2f}%{drop}")
    return "\n".join(lines)
