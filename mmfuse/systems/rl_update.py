"""The RL stage's policy update (:class:`~mmfuse.systems.rl.RLSystem`): clipped PPO steps over minibatches of
the sampled answers, the same for every advantage estimator; only the advantages differ."""

from __future__ import annotations

from typing import Any, cast

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from mmfuse.model import fuse_batch
from mmfuse.rl.advantages import Advantages
from mmfuse.rl.groups import cat_fused
from mmfuse.rl.ppo import aggregate, entropy, k3_kl, policy_loss, value_loss
from mmfuse.rl.rollout import Rollout, evaluate_actions, select_rows
from mmfuse.systems.rl_sampling import Part

__all__ = ["ppo_update"]


def ppo_update(system: Any, parts: list[Part], train: Rollout, est: Advantages, beta: float,
               stats: dict[str, list[Tensor]]) -> None:
    """``rl.ppo_epochs`` × ``rl.minibatches`` clipped steps of ``system`` (an ``RLSystem``) on the answers of
    ``parts`` (joined in ``train``, ``[N, T]``) with the advantages ``est`` (``[N, T]``); one plain step for
    ``rl.algorithm=reinforce``. With ``rl.kl.in_loss`` adds ``beta`` × the k3 KL to the reference; with a
    value head, ``rl.vf_coef`` × the clipped value loss. Appends each step's statistics to ``stats``."""
    r = system.rl
    epochs, minibatches = (1, 1) if r["algorithm"] == "reinforce" else (int(r["ppo_epochs"]), int(r["minibatches"]))
    norm_len = int(r["max_new_tokens"] or system.generator.max_length)  # Dr. GRPO's fixed length
    adv, ret = est.advantages, est.returns
    opt = cast(LightningOptimizer, system.optimizers())  # configure_optimizers returns one optimizer
    n = train.tokens.shape[0]
    # the answers' fused rows; re-run every minibatch when the encoders or the fusion are trained
    fixed = None if system.trunk_trained else cat_fused([select_rows(p.fused, p.qrows) for p in parts])
    for _ in range(epochs):
        order = torch.randperm(n, generator=system._rng(), device=system.device)
        for rows in order.tensor_split(min(minibatches, n)):  # exactly `minibatches` near-equal parts
            all_fused = fixed if fixed is not None else cat_fused(
                [select_rows(fuse_batch(system.model, p.batch), p.qrows) for p in parts])
            logp, values, logits = evaluate_actions(system.generator, system.value_head, select_rows(all_fused, rows),
                                                    train.tokens[rows], r["temperature"])
            mask = train.mask[rows]
            p_loss, p_stats = policy_loss(logp, train.logprobs[rows], adv[rows], mask, r["clip"], est.agg,
                                          norm_len)
            ent = entropy(logits, mask)
            loss = p_loss - r["entropy_coef"] * ent
            terms = {"rl policy loss": p_loss, "rl entropy": ent}
            if r["kl"]["in_loss"]:  # β·k3 to the reference, summed over tokens like the policy loss
                kl_loss = aggregate(k3_kl(logp, train.ref_logprobs[rows], mask), mask, est.agg, norm_len)
                loss = loss + beta * kl_loss
                terms["rl kl loss"] = kl_loss
                stats.setdefault("kl_loss", []).append(kl_loss.detach())
            if values is not None and ret is not None:
                v_loss, _ = value_loss(values, train.values[rows], ret[rows], mask, r["value_clip"])
                loss = loss + r["vf_coef"] * v_loss
                terms["rl value loss"] = v_loss
                stats.setdefault("value_loss", []).append(v_loss.detach())
            opt.zero_grad()
            if not system.check_loss(loss, terms):
                continue  # skip_batch: this minibatch's update is dropped
            system.manual_backward(loss)
            if not system.check_grads():  # before clipping: a clipped inf gradient would be NaN everywhere
                continue
            # Lightning's manual-optimisation recipe (``system`` is an RLSystem, typed Any: rl.py imports this)
            system.clip_gradients(opt,
                                  gradient_clip_val=system.cfg["optim"]["grad_clip"] or None,
                                  gradient_clip_algorithm="norm")
            opt.step()
            for key, value in {"policy_loss": p_loss, "entropy": ent, **p_stats}.items():
                stats.setdefault(key, []).append(value.detach())
