"""Reinforcement-learning utilities (token-level advantages, whitening) for fine-tuning.

Tensors are laid out ``[B, T]``: one row per sampled answer, one column per token/action.
"""

from mmfuse.rl.gae import compute_gae, masked_mean, masked_var, masked_whiten

__all__ = ["compute_gae", "masked_whiten", "masked_mean", "masked_var"]
