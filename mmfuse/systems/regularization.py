"""The ``regularization`` config block as loss terms: ``reg/l2`` and ``reg/l2_sp``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from torch import Tensor, nn

from mmfuse.objectives.regularizers import l2_penalty, l2_sp


class Regularization(nn.Module):
    """Explicit regularisation terms added to the training loss.

    ``l2``: ``λ·Σ||θ||²`` over the model's parameters chosen by ``l2_exclude`` (default: every weight
    matrix, no biases or normalisation weights). ``l2_sp`` (Li et al. 2018): ``λ·Σ||θ−θ⁰||²`` over the
    encoders' parameters (``l2_sp_scope``: ``pretrained`` encoders only, or all ``encoders``), with θ⁰
    their weights when this module was built: the pretrained start. The start is kept in buffers, so
    it is saved in checkpoints and a resumed run holds the same point. As in the paper, parameters
    under L2-SP are left out of the plain L2 term.

    Args:
        model: the ``FusionModel`` (parameter names are relative to it).
        cfg: the ``regularization`` config node.
    """

    def __init__(self, model: nn.Module, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.l2, self.l2_sp = float(cfg["l2"]), float(cfg["l2_sp"])
        self.exclude = list(cfg["l2_exclude"]) if cfg.get("l2_exclude") is not None else None
        self.start = nn.Module()  # θ⁰ of L2-SP, as buffers ("." is not allowed in buffer names)
        self.sp_names: list[str] = []
        if self.l2_sp > 0:
            scope = cfg.get("l2_sp_scope", "pretrained")
            held = [name for name, enc in cast(nn.ModuleDict, model.encoders).items()  # FusionModel.encoders
                    if scope == "encoders" or getattr(enc, "is_pretrained", False)]
            if not held:
                raise ValueError("regularization.l2_sp > 0 but no encoder is pretrained, so there is no start "
                                 "point to hold; load pretrained weights or set regularization.l2_sp_scope=encoders")
            for n, p in model.named_parameters():
                if p.requires_grad and n.split(".")[:2] in [["encoders", h] for h in held]:
                    self.sp_names.append(n)
                    self.start.register_buffer(n.replace(".", "__"), p.detach().clone())

    def forward(self, model: nn.Module) -> dict[str, Tensor]:
        """``{"reg/l2": ..., "reg/l2_sp": ...}`` for the terms whose λ > 0."""
        terms: dict[str, Tensor] = {}
        if self.l2 > 0:
            sp = set(self.sp_names)
            named = [(n, p) for n, p in model.named_parameters() if n not in sp]
            terms["reg/l2"] = l2_penalty(named, exclude=self.exclude, lam=self.l2)
        if self.l2_sp > 0:
            ref = {n: getattr(self.start, n.replace(".", "__")) for n in self.sp_names}
            params = dict(model.named_parameters())
            terms["reg/l2_sp"] = l2_sp([(n, params[n]) for n in self.sp_names], ref, lam=self.l2_sp)
        return terms

    def extra_repr(self) -> str:
        return f"l2={self.l2}, l2_sp={self.l2_sp} over {len(self.sp_names)} tensors"
