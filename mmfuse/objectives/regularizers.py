"""Weight penalties as explicit loss terms: plain L2 and L2-SP.

These are NOT the same thing as the optimizer's ``weight_decay``. AdamW's weight decay is
*decoupled* (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"): each step does
``θ ← θ - lr·wd·θ`` directly on the weights, outside the gradient, so it is not divided by Adam's
adaptive denominator ``sqrt(v) + eps``. :func:`l2_penalty` instead adds ``λ·||θ||²`` to the loss;
its gradient ``2λθ`` joins the data gradient and goes through Adam's normalisation, so weights
with large gradient history are barely shrunk. Under Adam the two are not equivalent (under plain
SGD they coincide for ``wd = 2λ``). mmfuse's config names them separately: ``optim.weight_decay``
(decoupled, in the optimizer) and the L2 term's ``λ`` (in the objective).

``named_params`` below is an iterable of ``(name, tensor)`` (e.g. ``model.named_parameters()``)
or a mapping ``name -> tensor``. Tensors with ``requires_grad=False`` (frozen) are always skipped:
their penalty would be a constant, so pass live parameters, not a ``state_dict``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor

NamedParams = Iterable[tuple[str, Tensor]] | Mapping[str, Tensor]
ExcludeRule = Callable[[str, Tensor], bool]
Exclude = str | Sequence[str] | ExcludeRule | None

# regularization.l2_sp_scope: whose start point L2-SP holds (pretrained encoders only, or every encoder)
L2_SP_SCOPES = ("pretrained", "encoders")


def default_exclude(name: str, param: Tensor) -> bool:
    """True for biases and normalisation weights, which L2 should not pull toward 0.

    The rule: every tensor with ``ndim <= 1`` (biases, LayerNorm/BatchNorm scales, learned
    scalars), and any whose dotted name has a component that (lower-cased) contains ``"bias"`` or
    ``"norm"`` (``LayerNorm``, ``batchnorm``, ``norm1``) or is ``"ln"`` / starts with ``"ln_"``
    (``ln_1``, ``ln_f``).
    """
    if param.ndim <= 1:
        return True
    for part in name.lower().split("."):
        if "bias" in part or "norm" in part or part == "ln" or part.startswith("ln_"):
            return True
    return False


def _rule(exclude: Exclude) -> ExcludeRule:
    """Turn ``exclude`` (None = :func:`default_exclude`, patterns, or a callable) into a predicate."""
    if exclude is None:
        return default_exclude
    if callable(exclude):
        return exclude
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    # a pattern matches as a plain substring or as an fnmatch glob over the whole name
    return lambda name, _p: any(s in name or fnmatch.fnmatchcase(name, s) for s in patterns)


def _items(named_params: NamedParams) -> list[tuple[str, Tensor]]:
    return list(named_params.items()) if isinstance(named_params, Mapping) else list(named_params)


def select_parameters(named_params: NamedParams, exclude: Exclude = None) -> list[tuple[str, Tensor]]:
    """The ``(name, tensor)`` pairs a penalty covers: trainable and not excluded.

    Args:
        named_params: ``(name, tensor)`` pairs or a ``name -> tensor`` mapping.
        exclude: None = :func:`default_exclude`; a string or sequence of strings = drop names that
            contain one as a substring or match one as an fnmatch glob; a callable
            ``(name, param) -> bool`` returning True to drop.
    """
    rule = _rule(exclude)
    return [(n, p) for n, p in _items(named_params) if p.requires_grad and not rule(n, p)]


def _zero(items: list[tuple[str, Tensor]]) -> Tensor:
    return torch.zeros(()) if not items else items[0][1].new_zeros(())


def l2_penalty(named_params: NamedParams, exclude: Exclude = None, lam: float = 1.0) -> Tensor:
    """``λ·Σ_θ ||θ||²`` (sum of squares, no ½) over :func:`select_parameters`; a differentiable ``[]``.

    Its gradient on a selected ``θ`` is ``2λθ``. ``torch.zeros(())`` when nothing is selected.
    """
    items = select_parameters(named_params, exclude)
    total = _zero(items)
    for _, p in items:
        total = total + p.square().sum()  # [] accumulated in the parameters' dtype/device
    return lam * total


def snapshot(named_params: NamedParams) -> dict[str, Tensor]:
    """Detached clones of the tensors, e.g. the pretrained starting point ``θ⁰`` for :func:`l2_sp`."""
    return {n: p.detach().clone() for n, p in _items(named_params)}


def l2_sp(
    named_params: NamedParams, reference: NamedParams, lam: float = 1.0, exclude: Exclude = None
) -> Tensor:
    """L2-SP (Li, Grandvalet & Davoine 2018): ``λ·Σ_θ ||θ - θ⁰||²`` toward the starting point.

    Covers trainable parameters whose name is in ``reference`` (``θ⁰``, e.g. from
    :func:`snapshot` of the pretrained model). Unlike :func:`l2_penalty`, ``exclude=None`` here
    excludes NOTHING: the paper pulls every pretrained (shared) weight, biases included, back to
    its start. New layers absent from ``reference`` are not covered (the paper gives them plain
    L2; use :func:`l2_penalty` for that). Exactly 0 at ``θ⁰``. A shape mismatch is a ValueError.
    ``reference`` is a mapping name → tensor or (name, tensor) pairs (e.g. a ``state_dict``).
    """
    reference = dict(reference.items()) if isinstance(reference, Mapping) else dict(reference)
    items = select_parameters(named_params, exclude if exclude is not None else (lambda _n, _p: False))
    items = [(n, p) for n, p in items if n in reference]
    total = _zero(items)
    for n, p in items:
        ref = reference[n]
        if ref.shape != p.shape:
            raise ValueError(f"l2_sp: parameter {n!r} has shape {tuple(p.shape)} but reference {tuple(ref.shape)}")
        total = total + (p - ref.detach().to(p.device, p.dtype)).square().sum()  # []
    return lam * total
