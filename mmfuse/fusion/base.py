"""The fusion contract and its registry.

A fusion is an ``nn.Module`` built as ``Fusion(in_dims: dict[str, int], dim: int, **hparams)``
whose ``forward(inputs: dict[str, EncoderOutput]) -> FusionOutput``. Defaults live in the
constructor's signature. Padded tokens (mask False) must not change any output.

Optional fast path: a fusion whose ``accepts_index`` attribute is True may be called as
``forward(inputs, index={"image": image_index})`` with one ``inputs["image"]`` row per
distinct image and ``image_index [B]`` mapping each question to its row; it must return
exactly what ``forward`` returns on the gathered per-question inputs. ``FusionModel`` uses
this so per-image work (e.g. cross-attention keys/values) is done once per image.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from mmfuse.encoders.base import EncoderOutput
from mmfuse.layers import masked_mean
from mmfuse.registry import Registry, check_options, constructor_options

__all__ = ["FUSIONS", "FusionOutput", "build_fusion", "check_inputs", "fusion_hparams", "list_fusions",
           "masked_mean", "pick_pair", "register_fusion"]

FUSIONS: Registry[type[nn.Module]] = Registry("fusion")


class FusionOutput(NamedTuple):
    """What a fusion hands to the heads.

    Attributes:
        pooled: ``[B, dim]`` fused representation.
        tokens: ``[B, N, dim]`` fused token sequence, or None for pooled-only fusions.
        mask: ``[B, N]`` bool mask for ``tokens`` (True = real), or None.
        attention: fusion-specific attention weights for visualisation, or None
            (``cross_attention``: ``[B, heads, N_text, N_vision]`` of the last layer).
    """

    pooled: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None
    attention: Tensor | None = None


def register_fusion(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register a fusion under ``name`` so configs can select it."""
    return FUSIONS.register(name)


def list_fusions() -> list[str]:
    """Names of every registered fusion, sorted."""
    return FUSIONS.names()


def fusion_hparams(name: str) -> dict[str, Any]:
    """The tunable hyper-parameters of fusion ``name`` and their defaults (from its signature)."""
    return constructor_options(FUSIONS.get(name), exclude=("in_dims", "dim"))


def build_fusion(name: str, in_dims: dict[str, int], dim: int, **hparams: Any) -> nn.Module:
    """Build the fusion registered as ``name``.

    Args:
        name: a name from :func:`list_fusions`.
        in_dims: feature size of each modality, e.g. ``{"text": 768, "image": 384}``.
        dim: output size of the fused representation.
        **hparams: fusion-specific options; an unknown one is an error naming the valid ones.
    """
    cls = FUSIONS.get(name)
    check_options("fusion", name, hparams, fusion_hparams(name))
    return cls(in_dims=dict(in_dims), dim=int(dim), **hparams)


def check_inputs(
    inputs: Mapping[str, EncoderOutput], in_dims: Mapping[str, int], fusion: str
) -> list[EncoderOutput]:
    """The inputs of the modalities in ``in_dims``, in sorted modality order.

    Extra modalities in ``inputs`` are ignored. A missing modality is a ``KeyError`` naming the
    expected ones; a feature size that differs from ``in_dims`` is a ``ValueError``.
    """
    names = sorted(in_dims)
    missing = [m for m in names if m not in inputs]
    if missing:
        raise KeyError(
            f"fusion {fusion!r} is missing modality(ies) {missing}; expected {names}, got {sorted(inputs)}"
        )
    for m in names:
        got = inputs[m].pooled.shape[-1]
        if got != in_dims[m]:
            raise ValueError(f"fusion {fusion!r}: modality {m!r} has feature size {got}, expected {in_dims[m]}")
    return [inputs[m] for m in names]


def pick_pair(fusion: str, in_dims: Mapping[str, int], first: str, second: str | None,
              roles: tuple[str, str] = ("query", "context")) -> tuple[str, str]:
    """The two modalities an asymmetric fusion reads (e.g. ``cross_attention``'s query and context).

    ``second=None`` means the single modality other than ``first``. Modalities beyond the two are ignored
    with a warning. Errors name the fusion, the role (``roles``: the two argument names) and the modalities.
    """
    names = sorted(in_dims)
    if first not in in_dims:
        raise ValueError(f"{fusion} {roles[0]} modality {first!r} not among the modalities {names}")
    if second is None:
        others = [m for m in names if m != first]
        if len(others) != 1:
            raise ValueError(f"{fusion} cannot infer the {roles[1]} modality from {names} ({roles[0]}={first!r}); "
                             f"set {roles[1]}= explicitly")
        second = others[0]
    if second not in in_dims or second == first:
        raise ValueError(f"{fusion} {roles[1]} modality {second!r} must be one of {names} other than {first!r}")
    ignored = [m for m in names if m not in (first, second)]
    if ignored:
        warnings.warn(f"{fusion} ignores modality(ies) {ignored}", stacklevel=3)
    return first, second
