"""Reinforcement-learning maths for fine-tuning the answer generator: token-level advantages (GAE and the
critic-free estimators by name: GRPO, RLOO, REINFORCE++, REINFORCE), whitening, reward shaping with a KL
leash, reward functions, PPO losses and KL controllers, rollouts (sampling answers from the generator and
packing what PPO needs) and group sampling (G answers per question).

Tensors are laid out ``[B, T]``: one row per sampled answer, one column per token/action.
"""

from mmfuse.rl.advantages import (
    get_advantage,
    grpo_advantages,
    length_adaptive_lambda,
    list_advantages,
    register_advantage,
    rloo_advantages,
)
from mmfuse.rl.gae import compute_gae, masked_mean, masked_var, masked_whiten
from mmfuse.rl.ppo import AdaptiveKLController, FixedKLController, entropy, explained_variance, policy_loss, value_loss
from mmfuse.rl.rewards import get_reward, list_rewards, register_reward, shape_token_rewards
from mmfuse.rl.rollout import Rollout, collect_rollout, evaluate_actions

__all__ = ["AdaptiveKLController", "FixedKLController", "Rollout", "collect_rollout", "compute_gae", "entropy",
           "evaluate_actions", "explained_variance", "get_advantage", "get_reward", "grpo_advantages",
           "length_adaptive_lambda", "list_advantages", "list_rewards", "masked_mean", "masked_var", "masked_whiten",
           "policy_loss", "register_advantage", "register_reward", "rloo_advantages", "shape_token_rewards",
           "value_loss"]
