"""The RL stage: PPO (or REINFORCE) fine-tuning of the answer generator against a reward, with GAE
advantages from a value head and a KL leash to the frozen supervised policy."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torchmetrics import MeanMetric

from mmfuse.checkpoints import read_checkpoint
from mmfuse.config import complete_config
from mmfuse.errors import ConfigError
from mmfuse.fusion.base import FusionOutput
from mmfuse.heads.generator import AnswerGenerator
from mmfuse.heads.value import ValueHead
from mmfuse.metrics.vqa_metric import VQAAccuracy
from mmfuse.model import fuse_batch
from mmfuse.random_state import Stream
from mmfuse.rl import ppo
from mmfuse.rl.gae import compute_gae, masked_mean, masked_whiten
from mmfuse.rl.ppo import AdaptiveKLController, FixedKLController, entropy, explained_variance, policy_loss, value_loss
from mmfuse.rl.rewards import RewardFn, get_reward
from mmfuse.rl.rollout import TRAINABLE_PARTS, Rollout, collect_rollout, evaluate_actions, select_rows
from mmfuse.systems.base import BaseSystem, seen_anywhere
from mmfuse.tasks.generation import AnswerGenerationTask

GENERATION = "answer_generation"
__all__ = ["RLSystem", "check_trainable", "fuse_batch", "rl_config"]


class RLSystem(BaseSystem):
    """The RL stage on :class:`~mmfuse.systems.base.BaseSystem`: the answer generator trained by RL (manual
    optimisation). It builds no loss weighting, regulariser or task-gradient machinery: none applies here.

    Every training batch is one rollout batch: one answer sampled per question (``cfg["rl"]``), scored
    by the reward, turned into per-token rewards (−β·KL to the frozen ``reference`` copy, plus the
    score on the last token), GAE advantages from ``value_head`` on the decoder states, then
    ``ppo_epochs`` × ``minibatches`` clipped PPO steps with gradient clipping (``optim.grad_clip``).
    Dropout is off in every module (as in TRL): the log-probs PPO recomputes must equal the rollout's.

    Validation and test run the base's evaluation step (greedy decoding, the same VQA metric), plus, with
    ``rl.eval_sampled``, one sampled answer per question: ``<stage>/sampled/acc`` and ``<stage>/kl``
    (the exact per-state KL to the reference summed along the sampled answer). The checkpoint holds
    the model under the same keys as a supervised one, so ``tools/evaluate.py`` scores it as is.

    Args: those of :class:`~mmfuse.systems.base.BaseSystem`; ``reward`` overrides ``rl.reward`` with a callable
    ``(texts, batch) -> Tensor[B]`` (research code; not stored, pass it again when loading).

    Logged every step: ``rl/score``, ``rl/reward`` (score − β·KL), ``rl/kl`` (per answer), ``rl/beta``,
    ``rl/policy_loss``, ``rl/value_loss``, ``rl/entropy``, ``rl/approx_kl``, ``rl/clipfrac``,
    ``rl/explained_variance``, ``rl/answer_length`` (tokens, EOS included), ``rl/truncated``.
    """

    def __init__(self, cfg: dict[str, Any], answers: Sequence[str], text_vocab_size: int | None = None,
                 pad_token_id: int = 0, answer_types: Sequence[str] = (), fusion: nn.Module | None = None,
                 question_types: Sequence[str] = (), answer_words: Sequence[str] = (),
                 reward: RewardFn | None = None) -> None:
        super().__init__(cfg, answers, text_vocab_size, pad_token_id, answer_types, fusion, question_types,
                         answer_words)
        if GENERATION not in self.active:
            raise ValueError(f"RL fine-tunes the answer generator, but this model's tasks are {self.active}: "
                             f"start from a checkpoint trained with '{GENERATION}' in tasks.active")
        self.automatic_optimization = False
        self.rl = self.cfg["rl"]
        self.reward_fn = get_reward(reward or self.rl["reward"])
        if self.cfg["eval"].get("task") is None:
            self.prediction_task = GENERATION  # what evaluate() scores: the fine-tuned generator
        self.value_head = ValueHead(self.generator.dim, int(self.rl["value_hidden"]))
        self.reference = copy.deepcopy(self.model).requires_grad_(False)
        check_trainable(self.rl["train"], self.model.modalities)
        self.trained = {"generator": self.generator, "fusion": self.model.fusion,
                        **{name: self.model.encoders[name] for name in self.model.modalities}}
        self.model.requires_grad_(False)
        for part in self.rl["train"]:
            self.trained[part].requires_grad_(True)
        self.trunk_trained = any(p in self.rl["train"] for p in ("fusion", "text", "image"))
        kl = self.rl["kl"]
        self.kl_ctl = (AdaptiveKLController(kl["coef"], kl["target"], kl["horizon"]) if kl["adaptive"]
                       else FixedKLController(kl["coef"]))
        self.rng: torch.Generator | None = None  # rollouts and minibatch order
        self.eval_rng: torch.Generator | None = None  # sampled evaluation, re-seeded every epoch

    @property
    def generator(self) -> AnswerGenerator:
        return cast(AnswerGenerator, self.model.heads[GENERATION])  # the answer_generation task's head

    def set_answer_types(self, answer_types: Sequence[str], question_types: Sequence[str] = ()) -> None:
        super().set_answer_types(answer_types, question_types)
        self.sampled = nn.ModuleDict({s: VQAAccuracy(list(answer_types), list(question_types))
                                      for s in ("val", "test")})
        self.sampled_kl = nn.ModuleDict({s: MeanMetric(nan_strategy="disable") for s in ("val", "test")})

    def train(self, mode: bool = True) -> RLSystem:
        super().train(mode)
        for module in (self.model, self.reference):  # no dropout: rollout and update log-probs agree
            module.eval()
        return self

    def load_supervised(self, state_dict: dict[str, Tensor]) -> None:
        """Load a supervised checkpoint's ``model.*`` weights into the policy and the reference."""
        weights = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
        self.model.load_state_dict(weights)
        self.reference.load_state_dict(weights)

    # -- rollouts -------------------------------------------------------------------------------------
    def _rng(self) -> torch.Generator:
        if self.rng is None or self.rng.device != self.device:
            self.rng = torch.Generator(device=self.device).manual_seed(int(self.cfg["seed"]))
        return self.rng

    def _reseed_eval(self) -> None:
        # the same sampled answers for the same weights: evaluate() reproduces the test stage's numbers
        self.eval_rng = torch.Generator(device=self.device).manual_seed(int(self.cfg["seed"]) + 1)

    def rollout(self, batch: dict[str, Any]) -> tuple[Rollout, FusionOutput]:
        """Sample and score one answer per question; also returns the policy's fused features."""
        r = self.rl
        with torch.no_grad():
            fused = fuse_batch(self.model, batch)
            ref_fused = fuse_batch(self.reference, batch) if self.trunk_trained else fused
            roll = collect_rollout(
                self.generator, self.value_head, fused, cast(AnswerGenerator, self.reference.heads[GENERATION]),
                ref_fused, cast(AnswerGenerationTask, self.tasks[GENERATION]).tokenizer.decode_batch, batch,
                self.reward_fn, kl_coef=self.kl_ctl.value,
                kl_estimator=r["kl"]["estimator"], temperature=r["temperature"], top_k=r["top_k"],
                max_new_tokens=r["max_new_tokens"], truncation=r["truncation"],
                missing_eos_penalty=r["missing_eos_penalty"], generator=self._rng())
        return roll, fused

    def advantages(self, roll: Rollout) -> tuple[Tensor, Tensor]:
        """``(advantages, returns)`` ``[B, T]``: GAE for PPO; for REINFORCE the reward-to-go minus its
        batch mean (the baseline), and returns = reward-to-go."""
        r = self.rl
        if r["algorithm"] == "reinforce":
            _, ret = compute_gae(roll.rewards, torch.zeros_like(roll.values), roll.mask, roll.dones, None,
                                 gamma=r["gamma"], lam=1.0)  # [B, T] reward-to-go
            adv = ret - masked_mean(ret, roll.mask)
        else:
            adv, ret = compute_gae(roll.rewards, roll.values, roll.mask, roll.dones, roll.last_value,
                                   gamma=r["gamma"], lam=r["lam"])
        if r["whiten_advantages"]:
            adv = masked_whiten(adv, roll.mask)
        return adv, ret

    # -- training ---------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        r = self.rl
        roll, fused = self.rollout(batch)
        adv, ret = self.advantages(roll)
        reinforce = r["algorithm"] == "reinforce"
        epochs, minibatches = (1, 1) if reinforce else (int(r["ppo_epochs"]), int(r["minibatches"]))
        opt = cast(LightningOptimizer, self.optimizers())  # configure_optimizers returns one optimizer
        n = roll.tokens.shape[0]
        stats: dict[str, list[Tensor]] = {}
        for _ in range(epochs):
            order = torch.randperm(n, generator=self._rng(), device=self.device)
            for rows in order.tensor_split(min(minibatches, n)):  # exactly `minibatches` near-equal parts
                mb_fused = select_rows(fuse_batch(self.model, batch) if self.trunk_trained else fused, rows)
                logp, values, logits = evaluate_actions(self.generator, self.value_head, mb_fused, roll.tokens[rows],
                                                        r["temperature"])
                mask = roll.mask[rows]
                p_loss, p_stats = policy_loss(logp, roll.logprobs[rows], adv[rows], mask, r["clip"])
                ent = entropy(logits, mask)
                loss = p_loss - r["entropy_coef"] * ent
                if not reinforce:
                    v_loss, _ = value_loss(values, roll.values[rows], ret[rows], mask, r["value_clip"])
                    loss = loss + r["vf_coef"] * v_loss
                    stats.setdefault("value_loss", []).append(v_loss.detach())
                opt.zero_grad()
                if not self.check_loss(loss, {"rl policy loss": p_loss, "rl entropy": ent,
                                              **({"rl value loss": v_loss} if not reinforce else {})}):
                    continue  # skip_batch: this minibatch's update is dropped
                self.manual_backward(loss)
                if not self.check_grads():  # before clipping: a clipped inf gradient would be NaN everywhere
                    continue
                # Lightning's manual-optimisation recipe; at runtime a LightningOptimizer is an instance of the
                # wrapped optimizer's class, which Lightning's Optimizer annotation cannot express
                self.clip_gradients(opt,  # type: ignore[arg-type]
                                    gradient_clip_val=self.cfg["optim"]["grad_clip"] or None,
                                    gradient_clip_algorithm="norm")
                opt.step()
                for key, value in {"policy_loss": p_loss, "entropy": ent, **p_stats}.items():
                    stats.setdefault(key, []).append(value.detach())
        seq_kl = roll.kl.sum(1)  # [B]
        beta = self.kl_ctl.value  # the β these rewards were shaped with
        self.kl_ctl.update(float(seq_kl.mean()), n)
        logged = {f"rl/{k}": torch.stack(v).mean() for k, v in stats.items()}
        logged.update({
            "rl/score": roll.scores.mean(), "rl/kl": seq_kl.mean(), "rl/beta": torch.tensor(beta),
            "rl/reward": roll.rewards.sum(1).mean(), "rl/answer_length": roll.mask.sum(1).float().mean(),
            "rl/truncated": roll.truncated.float().mean(),
        })
        if not reinforce:
            logged["rl/explained_variance"] = explained_variance(roll.values, ret, roll.mask)
        for key, value in logged.items():
            self.log(key, value.float(), on_step=True, on_epoch=False, batch_size=n, prog_bar=key == "rl/score")

    # -- evaluation ---------------------------------------------------------------------------------------
    def _sampled_eval(self, batch: dict[str, Any], stage: str) -> None:
        if not self.rl["eval_sampled"] or batch.get("padding") or not batch["question_id"]:
            return
        r = self.rl
        with torch.no_grad():
            fused = fuse_batch(self.model, batch)
            ref_fused = fuse_batch(self.reference, batch) if self.trunk_trained else fused
            gen = self.generator.generate(fused, "sample", max_new_tokens=r["max_new_tokens"],
                                          temperature=r["temperature"], top_k=r["top_k"], generator=self.eval_rng)
            ref = self.reference.heads[GENERATION](ref_fused, gen.tokens).logits / r["temperature"]
            pol = self.generator(fused, gen.tokens).logits / r["temperature"]
            kl = ppo.exact_token_kl(pol, ref, gen.mask).sum(1)  # [B]
        texts = cast(AnswerGenerationTask, self.tasks[GENERATION]).tokenizer.decode_batch(gen.tokens)
        rows = [i for i, a in enumerate(batch["answers"]) if a]
        if rows:
            cast(VQAAccuracy, self.sampled[stage]).update([texts[i] for i in rows], *([x[i] for i in rows] for x in (
                batch["answers"], batch["answer_type"], batch["question_type"])))
        cast(MeanMetric, self.sampled_kl[stage]).update(kl.mean(), weight=len(texts))

    def on_validation_epoch_start(self) -> None:
        self._reseed_eval()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._reseed_eval()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._sampled_eval(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._sampled_eval(batch, "test")

    def _log_sampled(self, stage: str) -> None:
        """``<stage>/sampled/acc`` and ``<stage>/kl``; in a distributed run every process computes (syncs) both."""
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        metric, kl = cast(VQAAccuracy, self.sampled[stage]), cast(MeanMetric, self.sampled_kl[stage])
        if metric.update_called or dist:
            self.log(f"{stage}/sampled/acc", metric.compute()["acc"], sync_dist=False)
        if seen_anywhere(kl, dist):
            self.log(f"{stage}/kl", kl.compute(), sync_dist=False)
        metric.reset()
        kl.reset()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_sampled("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_sampled("test")

    # -- checkpoint extras and optimiser -------------------------------------------------------------------
    def random_streams(self) -> dict[str, Stream]:
        return {**super().random_streams(), "rollouts": self._rng()}  # sampled answers, minibatch order

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mmfuse_kl_controller"] = self.kl_ctl.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        # RL checkpoints written while RLSystem extended SupervisedSystem may hold its (unused) loss weighting
        # and regulariser buffers: not part of this system
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(("weighting.", "regularization."))]:
            del state[key]
        if "mmfuse_kl_controller" in checkpoint:
            self.kl_ctl.load_state_dict(checkpoint["mmfuse_kl_controller"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=float(self.rl["lr"]), betas=tuple(self.cfg["optim"]["betas"]),
                                 weight_decay=0.0)


def rl_config(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """``cfg`` with ``model`` and ``tasks`` replaced by those of the ``rl.init_from`` checkpoint (the
    architecture must match its weights), and the loaded checkpoint."""
    path = Path(str(cfg.rl.init_from))
    if not path.is_file():
        raise FileNotFoundError(f"rl.init_from: checkpoint not found: {path}")
    ckpt = read_checkpoint(path, trust=bool(cfg.trust_checkpoint))
    stored = complete_config(ckpt.get("hyper_parameters", {}).get("cfg") or {})
    if GENERATION not in stored["tasks"]["active"]:
        raise ValueError(f"rl.init_from={path}: the checkpoint trained {stored['tasks']['active']}, RL needs "
                         f"an '{GENERATION}' head (train with tasks.active=[{GENERATION}])")
    check_trainable(cfg.rl.train, stored["model"]["modalities"], f" of the rl.init_from checkpoint {path}")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = OmegaConf.create(stored["model"])
        cfg.tasks = OmegaConf.create(stored["tasks"])
        if stored["model"]["video"]["enabled"]:  # the time embeddings are sized by the checkpoint's clips
            cfg.data.video.num_frames = stored["data"]["video"]["num_frames"]
    return cfg, ckpt


def check_trainable(parts: Sequence[str], modalities: Sequence[str], where: str = "") -> None:
    """ConfigError when ``rl.train`` names an encoder the model does not have (a one-modality model)."""
    valid = [p for p in TRAINABLE_PARTS if p in ("generator", "fusion") or p in modalities]
    for part in parts:
        if part in TRAINABLE_PARTS and part not in valid:
            raise ConfigError(f"config key 'rl.train' has {part!r}, but the model{where} has no {part} encoder "
                              f"(model.modalities={list(modalities)}); valid parts: {', '.join(valid)}")
