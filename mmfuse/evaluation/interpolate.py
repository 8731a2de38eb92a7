"""Weight-space interpolation between two checkpoints (WiSE-FT: Wortsman et al. 2022, "Robust
fine-tuning of zero-shot models").

The models θ(α) = (1 − α)·θ_A + α·θ_B on the line between two checkpoints of one architecture are
each written as a checkpoint and scored with :func:`mmfuse.evaluate`; accuracy against α goes to
``interpolation.json`` and ``interpolation.png``. α outside [0, 1] extrapolates and is allowed.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mmfuse.checkpoints import read_checkpoint
from mmfuse.config import complete_config, load_config
from mmfuse.errors import CheckpointMismatch
from mmfuse.evaluation.run import evaluate
from mmfuse.utils import write_json
from mmfuse.viz.figures import DPI

log = logging.getLogger(__name__)
# Training state of A that means nothing for an interpolated model (and would only bloat the file).
DROPPED_KEYS = ("optimizer_states", "lr_schedulers")
MAX_ALPHAS = 1000  # a typo such as "0,1e-9,...,1" should fail, not allocate a billion evaluations


def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    if not isinstance(d, Mapping):
        return {prefix.removesuffix("."): d}
    return {k: v for key, sub in d.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}


def check_compatible(a: Mapping[str, Tensor], b: Mapping[str, Tensor], names: tuple[str, str] = ("A", "B")) -> None:
    """Raise :class:`CheckpointMismatch` unless ``a`` and ``b`` have the same keys, shapes and dtypes.

    The message names the first difference in ``a``'s key order (keys only in ``b`` come last)
    and how many differences there are in all.
    """
    na, nb = names
    problems = []
    for key, ta in a.items():
        if key not in b:
            problems.append(f"parameter {key!r} is in {na} but missing from {nb}")
        elif ta.shape != b[key].shape or ta.dtype != b[key].dtype:
            problems.append(f"parameter {key!r} differs: {na} has {_describe(ta)}, {nb} has {_describe(b[key])}")
    problems += [f"parameter {key!r} is in {nb} but missing from {na}" for key in b if key not in a]
    if problems:
        more = f" (and {len(problems) - 1} more difference(s))" if len(problems) > 1 else ""
        raise CheckpointMismatch(f"not the same architecture: {problems[0]}{more}")


def _token_difference(tok_a: str | None, tok_b: str | None, names: tuple[str, str]) -> str:
    """The first token whose id differs, in A's id order (= embedding row order)."""
    na, nb = names
    try:
        va, vb = (json.loads(cast(str, t))["model"]["vocab"] for t in (tok_a, tok_b))  # None: TypeError below
    except (ValueError, KeyError, TypeError):  # no tokenizer in one of them, or not a WordPiece one
        return "the tokenizer definitions differ"
    for token, i in sorted(va.items(), key=lambda kv: kv[1]):
        if token not in vb:
            return f"token {token!r} (id {i} in {na}) is missing from {nb}"
        if vb[token] != i:
            return f"token {token!r} has id {i} in {na} but {vb[token]} in {nb}"
    extra = sorted(set(vb) - set(va))
    return f"token {extra[0]!r} is only in {nb}" if extra else "the tokenizer settings differ (same vocabulary)"


def check_same_setup(ckpt_a: dict[str, Any], ckpt_b: dict[str, Any], names: tuple[str, str] = ("A", "B")) -> None:
    """Raise :class:`CheckpointMismatch` unless both checkpoints share answer vocabulary and tokenizer.

    Otherwise output unit i (or embedding row i) would mean different answers (tokens) in the two
    models, and averaging them would be meaningless. Differences in the ``model`` / ``tasks``
    config are only logged: equal shapes may come from different settings (e.g. dropout), and
    the interpolated model is built from A's config.
    """
    na, nb = names
    ans_a, ans_b = (list(c["hyper_parameters"]["answers"]) for c in (ckpt_a, ckpt_b))
    if ans_a != ans_b:
        i = next((i for i, (x, y) in enumerate(zip(ans_a, ans_b)) if x != y), min(len(ans_a), len(ans_b)))
        at = [repr(v[i]) if i < len(v) else "nothing" for v in (ans_a, ans_b)]
        raise CheckpointMismatch(f"answer vocabularies differ at index {i}: {na} has {at[0]}, {nb} has {at[1]} "
                                 f"({len(ans_a)} vs {len(ans_b)} answers)")
    tok_a, tok_b = ckpt_a.get("mmfuse_tokenizer"), ckpt_b.get("mmfuse_tokenizer")
    if tok_a != tok_b:
        raise CheckpointMismatch(f"tokenizers differ: {_token_difference(tok_a, tok_b, names)}")
    arch_a, arch_b = ({k: v for k, v in _flat(c["hyper_parameters"].get("cfg", {})).items()
                       if k.startswith(("model.", "tasks."))} for c in (ckpt_a, ckpt_b))
    if differing := sorted(k for k in arch_a.keys() | arch_b.keys() if arch_a.get(k) != arch_b.get(k)):
        log.warning("model configs differ in %s; the interpolated models are built from %s's", differing, na)


def interpolate_state_dicts(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """(1 − α)·a + α·b for floating tensors, in ``a``'s key order and dtype.

    Computed in float64 (complex128) and cast back, so low-precision weights do not lose the
    small differences between the two models. α = 0 and α = 1 return bit-exact copies of ``a``
    and ``b``. Non-floating tensors (integer buffers) must be equal in both and are copied.
    """
    check_compatible(a, b)
    out: dict[str, Tensor] = {}
    for key, ta in a.items():
        tb = b[key]
        if not (ta.is_floating_point() or ta.is_complex()):
            if not torch.equal(ta, tb):
                raise CheckpointMismatch(f"non-floating tensor {key!r} differs between A and B; "
                                         "it cannot be interpolated")
            out[key] = ta.clone()
        elif alpha in (0, 1):  # exact end points, not (1 - 1)·a + 1·b with its rounding
            out[key] = (ta if alpha == 0 else tb).clone()
        else:
            wide = torch.complex128 if ta.is_complex() else torch.float64
            out[key] = ((1 - alpha) * ta.to(wide) + alpha * tb.to(wide)).to(ta.dtype)
    return out


def _number(token: str, text: str) -> float:
    try:
        value = float(token)
    except ValueError:
        value = math.nan  # reported below with the finiteness check
    if not math.isfinite(value):
        raise ValueError(f"alphas {text!r}: {token!r} is not a finite number")
    return value


def parse_alphas(text: str) -> list[float]:
    """``"0,0.25,1"`` → ``[0.0, 0.25, 1.0]``; ``"0,0.1,...,1"`` → 11 values 0, 0.1, ..., 1.

    In the ``start,next,...,end`` form the step is ``next − start`` and ``end`` is included; values
    are rounded to 10 decimals so 0.1-steps give 0.3, not 0.30000000000000004. Raises ValueError
    naming the bad token; duplicates are an error (each α gets its own output folder).
    """
    tokens = [t.strip() for t in text.split(",")]
    if "" in tokens:
        raise ValueError(f"alphas {text!r}: empty value (stray comma?)")
    if "..." in tokens:
        if len(tokens) != 4 or tokens[2] != "...":
            raise ValueError(f"alphas {text!r}: '...' must be used as 'start,next,...,end'")
        start, nxt, end = (_number(t, text) for t in (tokens[0], tokens[1], tokens[3]))
        step = nxt - start  # the end is included when it lies (within float error) on the progression
        steps = (end - start) / step if step else -1.0
        if steps < 0 or abs(steps - round(steps)) > 1e-6 * max(1.0, steps):
            raise ValueError(f"alphas {text!r}: end {tokens[3]!r} is not reached from {tokens[0]!r} "
                             f"in steps of {step:g}")
        if round(steps) >= MAX_ALPHAS:
            raise ValueError(f"alphas {text!r}: {round(steps) + 1} values, more than {MAX_ALPHAS}")
        values = [round(start + i * step, 10) for i in range(round(steps) + 1)]
    else:
        values = [_number(t, text) for t in tokens]
    if (dup := next((v for i, v in enumerate(values) if v in values[:i]), None)) is not None:
        raise ValueError(f"alphas {text!r}: {dup:g} is given twice")
    return values


def alpha_tag(alpha: float) -> str:
    """Short, unique folder/file tag of α: ``0.1``, ``1``, ``-0.5``."""
    short = f"{alpha:g}"
    return short if float(short) == alpha else repr(float(alpha))


def load_checkpoint(path: str | Path, mmap: bool = False, trust_checkpoint: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint dict on the CPU (``mmap``: tensors not read until used); raises
    FileNotFoundError naming ``path`` if it is absent, UnsafeCheckpoint if it needs more than plain data
    (unless ``trust_checkpoint``)."""
    return read_checkpoint(path, trust=trust_checkpoint, mmap=mmap)


def config_from_checkpoint(path: str | Path, overrides: Iterable[str] = (),
                           trust_checkpoint: bool = False) -> DictConfig:
    """The full config stored in the checkpoint, validated by :func:`mmfuse.load_config` with
    ``overrides`` on top (a temp YAML, because the checkpoint's folder may be read-only)."""
    # mmap: skip reading the weights
    saved = load_checkpoint(path, mmap=True, trust_checkpoint=trust_checkpoint)["hyper_parameters"]["cfg"]
    with tempfile.TemporaryDirectory() as tmp:
        OmegaConf.save(OmegaConf.create(complete_config(saved)), Path(tmp) / "run.yaml")  # older checkpoints too
        return load_config([Path(tmp) / "run.yaml"], list(overrides))


def interpolate(ckpt_a: str, ckpt_b: str, alphas: Sequence[float], cfg: DictConfig, output: Path,
                keep_checkpoints: bool = False) -> list[dict[str, Any]]:
    """Evaluate θ(α) for each α with ``cfg`` (split ``cfg.eval.split``); returns one row per α.

    Each interpolated checkpoint is A's checkpoint with its ``state_dict`` replaced and optimizer /
    scheduler states dropped, written to ``output/checkpoints/alpha_<α>.ckpt`` (deleted after its
    evaluation unless ``keep_checkpoints``); its evaluation goes to ``output/alpha_<α>/``. Rows:
    ``alpha``, ``accuracy`` (overall %), ``ci95``, ``per_answer_type``, ``output``. Also writes
    ``output/interpolation.json`` and ``output/interpolation.png``.
    """
    alphas = [float(x) for x in alphas]
    if not alphas or len({alpha_tag(x) for x in alphas}) != len(alphas):
        raise ValueError(f"alphas must be non-empty and distinct, got {alphas}")
    output = Path(output)
    trust = bool(cfg.get("trust_checkpoint", False))
    a, b = load_checkpoint(ckpt_a, trust_checkpoint=trust), load_checkpoint(ckpt_b, trust_checkpoint=trust)
    try:
        check_compatible(a["state_dict"], b["state_dict"])
        check_same_setup(a, b)
    except CheckpointMismatch as e:
        raise CheckpointMismatch(f"{e} [A = {ckpt_a}, B = {ckpt_b}]") from None
    base = {k: v for k, v in a.items() if k not in DROPPED_KEYS}
    ckpt_dir = output / "checkpoints"  # evaluate() then takes `output` as the run directory
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for alpha in alphas:
        path = ckpt_dir / f"alpha_{alpha_tag(alpha)}.ckpt"
        state = interpolate_state_dicts(a["state_dict"], b["state_dict"], alpha)
        torch.save({**base, "state_dict": state,
                    "mmfuse_interpolation": {"alpha": alpha, "a": str(ckpt_a), "b": str(ckpt_b)}}, path)
        del state
        run_cfg = copy.deepcopy(cfg)
        OmegaConf.update(run_cfg, "eval.checkpoint", str(path))
        OmegaConf.update(run_cfg, "eval.output", str(output / f"alpha_{alpha_tag(alpha)}"))
        try:
            metrics = evaluate(run_cfg)
        finally:
            if not keep_checkpoints:
                path.unlink(missing_ok=True)
        acc = metrics["accuracy"]
        rows.append({"alpha": alpha, "accuracy": acc.get("overall"), "ci95": acc.get("overall_ci95"),
                     "per_answer_type": acc.get("perAnswerType", {}), "output": str(Path(metrics["output"]).parent)})
    if not keep_checkpoints and not any(ckpt_dir.iterdir()):
        ckpt_dir.rmdir()
    write_json(output / "interpolation.json", {
        "method": "WiSE-FT weight-space interpolation: theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B",
        "checkpoint_a": str(ckpt_a), "checkpoint_b": str(ckpt_b), "split": cfg.eval.split, "rows": rows})
    short_a, short_b = (Path(*Path(c).parts[-3:]) for c in (ckpt_a, ckpt_b))  # run/checkpoints/file
    plot_interpolation(rows, output / "interpolation.png",
                       f"Weight-space interpolation, {cfg.eval.split} split\nA = {short_a}   B = {short_b}")
    return rows


def plot_interpolation(rows: Sequence[Mapping[str, Any]], path: Path | str, title: str) -> Path:
    """Overall accuracy against α with its 95% interval as a band, per answer type as thin lines;
    the end points α = 0 and α = 1 are labelled A and B."""
    pts = sorted((r for r in rows if r["accuracy"] is not None), key=lambda r: r["alpha"])
    ax = (fig := Figure(figsize=(9, 4.6), layout="constrained")).add_subplot()
    x, y = [r["alpha"] for r in pts], [r["accuracy"] for r in pts]
    if all(r["ci95"] for r in pts) and pts:
        ax.fill_between(x, [r["ci95"][0] for r in pts], [r["ci95"][1] for r in pts], color="#4c72b0", alpha=0.2,
                        lw=0, label="95% CI (bootstrap over questions)")
    for i, kind in enumerate(sorted({t for r in pts for t in r["per_answer_type"]})):
        ax.plot(x, [r["per_answer_type"].get(kind, math.nan) for r in pts], color=f"C{i + 1}", lw=1, ls="--",
                alpha=0.8, label=f"answer type {kind}")
    ax.plot(x, y, color="#1f3b70", lw=2, marker="o", ms=4, label="overall")
    for end, name in ((0.0, "A"), (1.0, "B")):
        if end in x:
            acc = y[x.index(end)]
            ax.annotate(f"{name}\n{acc:.1f}%", (end, acc), xytext=(0, 10), textcoords="offset points", ha="center",
                        va="bottom", fontweight="bold", bbox={"boxstyle": "round", "fc": "white", "ec": "none"})
    ax.set(xlabel="α   (θ = (1 − α)·θ_A + α·θ_B)", ylabel="VQA accuracy (%)", ylim=(0, 110))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if pts:
        fig.legend(fontsize=8, loc="outside right upper")  # outside: the curve and the A/B labels stay visible
    else:  # e.g. an unlabelled (test-server) split: predictions only, nothing to score
        ax.text(0.5, 0.5, "no scored questions", transform=ax.transAxes, ha="center", color="gray")
    ax.spines[["top", "right"]].set_visible(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    return path
