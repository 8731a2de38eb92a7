"""Multi-task loss weighting, selected by name: ``static``, ``uncertainty``, ``dwa``, ``gradnorm``, ``pcgrad``.

A weighting is an ``nn.Module`` built as ``Weighting(tasks, weights=None, **options)`` (defaults in
the constructor's signature). Per training step the loop calls ``forward(losses)`` for the total
loss; if ``grads`` is not ``"none"`` it also computes each task's UNWEIGHTED gradient on the shared
parameters (``"last"``: the last shared weight matrix only, ``"all"``: every shared parameter) and
passes them to ``observe`` and ``combine``. ``epoch_end`` receives each task's epoch-mean loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from mmfuse.objectives.gradients import gradient_cosines, pcgrad_project
from mmfuse.registry import Registry, check_options, constructor_options

__all__ = ["WEIGHTINGS", "LossWeighting", "build_weighting", "gradient_cosines", "list_weightings",
           "pcgrad_project", "register_weighting", "weighting_options"]
WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting")
Grads = Mapping[str, Sequence[Tensor | None]]  # task -> per-shared-parameter gradients
Weights = Mapping[str, float]


class LossWeighting(nn.Module):
    """Base weighting: ``total = Σ_t w_t·L_t`` over the tasks present, with constant weights.

    Args:
        tasks: every task name, in a fixed order (index k of any per-task tensor).
        weights: static config weight per task (default 1.0 each); a strategy may ignore them.
    """

    grads: str = "none"  # per-task shared-parameter gradients the loop must pass: none | last | all

    def __init__(self, tasks: Sequence[str], weights: Weights | None = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be non-empty and unique, got {self.tasks}")
        weights = dict(weights or {})
        self._check_names(weights, "weights")
        self.static = {t: float(weights.get(t, 1.0)) for t in self.tasks}

    def _check_names(self, names: Mapping[str, Any], what: str) -> list[str]:
        """The names in ``names`` in ``tasks`` order; an unknown one is a KeyError naming the known."""
        unknown = sorted(set(names) - set(self.tasks))
        if unknown:
            raise KeyError(f"{what}: unknown task(s) {unknown}; known tasks: {self.tasks}")
        return [t for t in self.tasks if t in names]

    def _present(self, losses: Mapping[str, Tensor]) -> list[str]:
        present = self._check_names(losses, "losses")
        if not present:
            raise ValueError(f"losses is empty; expected a subset of {self.tasks}")
        for t in present:
            if losses[t].numel() != 1:
                raise ValueError(f"loss {t!r} must be a scalar, got shape {tuple(losses[t].shape)}")
        return present

    def current_weights(self) -> dict[str, float]:
        """The constant weight of every task at this step (static weights here)."""
        return dict(self.static)

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """``losses``: task -> scalar loss (any non-empty subset). Returns (total, weight per present task)."""
        present = self._present(losses)
        w = self.current_weights()
        # python-float weights keep the losses' dtype (a float64 0-dim weight would promote it)
        total = sum(w[t] * losses[t].reshape(()) for t in present)
        return total, {t: w[t] for t in present}  # type: ignore[return-value]

    def observe(self, losses: Mapping[str, Tensor], grads: Grads) -> None:
        """Called after ``forward`` each step with unweighted per-task shared gradients; no-op here."""

    def combine(self, grads: Grads) -> list[Tensor | None] | None:
        """A replacement for the shared gradient ``Σ_t w_t g_t``, or None to keep it (here)."""
        return None

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:
        """Called at each training epoch's end with each task's mean loss; no-op here."""


@WEIGHTINGS.register("static")
class StaticWeighting(LossWeighting):
    """``total = Σ_t w_t·L_t`` with the config weights ``w_t``."""


@WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla 2018).

    Learns ``log_vars [K]`` = ``s_t = log σ_t²`` (init 0) with the model's optimizer:
    ``total = Σ_t exp(-s_t)·L_t + s_t`` over present tasks. This common form is 2x the paper's
    eq. 7 (which has 1/(2σ²) and log σ) and has the same optimum ``σ_t² = L_t``. Static weights
    are ignored. Reported weight: ``exp(-s_t)``.
    """

    def __init__(self, tasks: Sequence[str], weights: Weights | None = None) -> None:
        super().__init__(tasks, weights)
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))  # [K]

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, torch.exp(-self.log_vars.detach()).tolist()))

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        present = self._present(losses)
        idx = [self.tasks.index(t) for t in present]
        s = self.log_vars[idx]  # [P]; absent tasks get an exact zero gradient
        L = torch.stack([losses[t].reshape(()).to(s.dtype) for t in present])  # [P]
        total = (torch.exp(-s) * L + s).sum()  # []
        return total, dict(zip(present, torch.exp(-s.detach()).tolist()))


@WEIGHTINGS.register("dwa")
class DWAWeighting(LossWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison 2019, eq. 7); static weights are ignored.

    ``w_k = K·softmax_k(r_k / T)`` with ``r_k = L_k(t-1) / L_k(t-2)`` from the epoch means given to
    ``epoch_end``. ``w_k = 1`` for every task during the first two epochs, and for a task missing
    from (or with a non-positive mean in) either of the last two epochs; K and the softmax then run
    over the remaining tasks only. The history lives in buffers, so it survives ``state_dict``.
    """

    history: Tensor  # buffer [2, K]: mean losses of epochs t-2, t-1
    epochs_seen: Tensor  # buffer [], long

    def __init__(self, tasks: Sequence[str], weights: Weights | None = None, temperature: float = 2.0) -> None:
        super().__init__(tasks, weights)
        if temperature <= 0:
            raise ValueError(f"dwa temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.full((2, len(self.tasks)), math.nan))  # [2, K]: t-2, t-1
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def epoch_end(self, mean_losses: Mapping[str, float]) -> None:
        known = self._check_names(mean_losses, "mean_losses")
        row = [float(mean_losses[t]) if t in known else math.nan for t in self.tasks]
        self.history[0] = self.history[1]
        self.history[1] = torch.tensor(row, dtype=self.history.dtype, device=self.history.device)
        self.epochs_seen += 1

    def current_weights(self) -> dict[str, float]:
        w = [1.0] * len(self.tasks)
        if int(self.epochs_seen) >= 2:
            prev2, prev1 = self.history.double().cpu().tolist()
            ok = [k for k in range(len(self.tasks)) if prev2[k] > 0 and math.isfinite(prev1[k] / prev2[k])]
            if ok:
                r = torch.tensor([prev1[k] / prev2[k] for k in ok], dtype=torch.float64)  # [K']
                soft = len(ok) * torch.softmax(r / self.temperature, dim=0)  # [K'], sums to K'
                for k, v in zip(ok, soft.tolist()):
                    w[k] = v
        return dict(zip(self.tasks, w))


@WEIGHTINGS.register("gradnorm")
class GradNormWeighting(LossWeighting):
    """GradNorm (Chen et al. 2018); static weights are ignored (w starts at 1).

    Task weights ``task_weights [K]`` are a buffer updated in ``observe`` (never by the model's
    optimizer; the model loss uses them as constants). With ``g_t`` the unweighted gradient of
    ``L_t`` on the last shared weight matrix: ``G_t = w_t·||g_t||``, ``Ḡ = mean_t G_t``,
    ``r_t = L̃_t / mean(L̃)`` with ``L̃_t = L_t / L_t(0)``, constant target ``Ḡ·r_t^α`` and
    ``L_grad = Σ_t |G_t - target_t|``. Since ``∂G_t/∂w_t = ||g_t||``, the plain gradient step is
    ``w_t -= lr·sign(G_t - target_t)·||g_t||`` (so it scales with the gradient norm); then
    ``w >= 1e-3`` and ``Σ_t w_t = K`` over all tasks. ``L_t(0)`` is each task's first observed loss.
    """

    grads = "last"
    task_weights: Tensor  # buffer [K]
    initial_losses: Tensor  # buffer [K]

    def __init__(
        self, tasks: Sequence[str], weights: Weights | None = None, alpha: float = 1.5, lr: float = 0.025
    ) -> None:
        super().__init__(tasks, weights)
        self.alpha, self.lr = float(alpha), float(lr)
        self.register_buffer("task_weights", torch.ones(len(self.tasks)))  # [K]
        self.register_buffer("initial_losses", torch.full((len(self.tasks),), math.nan))  # [K]
        self.last_grad_loss = 0.0  # L_grad of the latest observe, for logging

    def current_weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self.task_weights.tolist()))

    @torch.no_grad()
    def observe(self, losses: Mapping[str, Tensor], grads: Grads) -> None:
        present = self._present(losses)
        if any(t not in grads for t in present):
            raise KeyError(f"gradnorm needs the gradients of every task in losses {present}; got {sorted(grads)}")
        dev, dt = self.task_weights.device, self.task_weights.dtype
        idx = torch.tensor([self.tasks.index(t) for t in present], device=dev)  # [P]
        L = torch.stack([losses[t].detach().reshape(()).to(dev, dt) for t in present])  # [P]
        zero = torch.zeros((), device=dev, dtype=torch.float64)
        sq = [sum((g.detach().to(dev).double().square().sum() for g in grads[t] if g is not None), zero)
              for t in present]  # P x [] squared norm of the task's concatenated list
        norms = torch.stack(sq).sqrt().to(dt)  # [P] ||g_t||
        L0 = torch.where(torch.isnan(self.initial_losses[idx]), L, self.initial_losses[idx])  # [P]
        self.initial_losses[idx] = L0  # L_t(0): the first loss seen for each task
        w = self.task_weights[idx]  # [P]
        G = w * norms  # [P]
        ratio = L / L0.clamp_min(1e-12)  # [P] L̃_t
        target = G.mean() * (ratio / ratio.mean()) ** self.alpha  # [P], a constant
        self.last_grad_loss = float((G - target).abs().sum())
        w = w - self.lr * torch.sign(G - target) * norms  # d|G_t - target_t| / dw_t
        new = self.task_weights.index_put((idx,), w).clamp_min(1e-3)  # [K]
        self.task_weights.copy_(new * len(self.tasks) / new.sum())  # Σ w = K over all tasks


@WEIGHTINGS.register("pcgrad")
class PCGradWeighting(LossWeighting):
    """PCGrad (Yu et al. 2020): ``combine`` projects the weighted task gradients ``w_t·g_t`` (flattened
    over all shared parameters) with :func:`pcgrad_project` and sums them. The random task order
    comes from a generator seeded with ``seed`` (its state is saved in checkpoints: exact across a resume).
    """

    grads = "all"

    def __init__(self, tasks: Sequence[str], weights: Weights | None = None, seed: int = 0) -> None:
        super().__init__(tasks, weights)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def combine(self, grads: Grads) -> list[Tensor | None] | None:
        present = self._check_names(grads, "grads")
        if not present:
            return None
        n = {len(grads[t]) for t in present}
        if len(n) != 1:
            raise ValueError(f"pcgrad: tasks have different numbers of parameter gradients {sorted(n)}")
        # reference tensor per parameter (None where no task reaches it)
        ref = [next((grads[t][p] for t in present if grads[t][p] is not None), None) for p in range(n.pop())]
        used = [p for p, r in enumerate(ref) if r is not None]
        if not used:
            return [None] * len(ref)
        # the casts: ref[p] is a tensor for every p in used, so every entry of parts is one too
        flats = []  # K x [N]: weighted task gradient over the used parameters
        for t in present:
            parts = [grads[t][p] if grads[t][p] is not None else torch.zeros_like(cast(Tensor, ref[p])) for p in used]
            flats.append(self.static[t] * torch.cat([cast(Tensor, g).reshape(-1) for g in parts]))
        total = torch.stack(pcgrad_project(flats, generator=self.generator)).sum(0)  # [N]
        out: list[Tensor | None] = [None] * len(ref)
        for p, c in zip(used, total.split([cast(Tensor, ref[p]).numel() for p in used])):
            out[p] = c.view_as(ref[p]).to(cast(Tensor, ref[p]).dtype)
        return out


def register_weighting(name: str) -> Callable[[type[LossWeighting]], type[LossWeighting]]:
    """Class decorator: register a :class:`LossWeighting` subclass under ``name`` (``loss.weighting``)."""
    return WEIGHTINGS.register(name)


def list_weightings() -> list[str]:
    """Names of every registered loss weighting, sorted."""
    return WEIGHTINGS.names()


def weighting_options(name: str) -> dict[str, Any]:
    """The options of weighting ``name`` and their defaults (from its constructor's signature)."""
    return constructor_options(WEIGHTINGS.get(name), exclude=("tasks", "weights"))


def build_weighting(
    name: str, tasks: Sequence[str], weights: Weights | None = None, **options: Any
) -> LossWeighting:
    """Build the weighting registered as ``name``; an unknown option is a TypeError naming the valid ones."""
    cls = WEIGHTINGS.get(name)
    check_options("loss weighting", name, options, weighting_options(name))
    return cls(tasks, weights, **options)
