"""Reinforcement-learning maths for fine-tuning the answer generator: token-level advantages (GAE),
whitening, reward shaping with a KL leash, reward functions, PPO losses and KL controllers, and rollouts
(sampling answers from the generator and packing what PPO needs).

Tensors are laid out ``[B, T]``: one row per sampled answer, one column per token/action.
"""

from mmfuse.rl.gae import compute_gae, masked_mean, masked_var, masked_whiten
from mmfuse.rl.ppo import AdaptiveKLController, FixedKLController, entropy, explained_variance, policy_loss, value_loss
from mmfuse.rl.rewards import get_reward, list_rewards, register_reward, shape_token_rewards
from mmfuse.rl.rollout import Rollout, collect_rollout, evaluate_actions

__all__ = ["AdaptiveKLController", "FixedKLController", "Rollout", "collect_rollout", "compute_gae", "entropy",
           "evaluate_actions", "explained_variance", "get_reward", "list_rewards", "masked_mean", "masked_var",
           "masked_whiten", "policy_loss", "register_reward", "shape_token_rewards", "value_loss"]
