"""The RL stage: PPO (or REINFORCE) fine-tuning of the answer generator against a reward, with G answers per
question, advantages from a named estimator (GAE on a value head, or critic-free: GRPO, RLOO, REINFORCE++,
REINFORCE) and a KL leash to the frozen supervised policy."""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from mmfuse.fusion.base import FusionOutput
from mmfuse.heads.generator import AnswerGenerator
from mmfuse.heads.value import ValueHead
from mmfuse.model import fuse_batch
from mmfuse.random_state import Stream
from mmfuse.rl.advantages import AdvantageInput, AdvantageOptions, Advantages, get_advantage, resolve_advantage
from mmfuse.rl.groups import cat_rollouts, group_rows, repeat_batch
from mmfuse.rl.ppo import (
    AdaptiveKLController,
    FixedKLController,
    explained_variance,
)
from mmfuse.rl.rewards import RewardFn, get_reward
from mmfuse.rl.rollout import Rollout, collect_rollout, select_rows
from mmfuse.systems.base import BaseSystem
from mmfuse.systems.rl_eval import eval_metrics, greedy_reward, log_sampled, sampled_eval, save_sampled
from mmfuse.systems.rl_sampling import Part, RefillFn, dynamic_sampling, refill_batch
from mmfuse.systems.rl_setup import GENERATION, check_trainable, rl_config
from mmfuse.systems.rl_update import ppo_update
from mmfuse.tasks.base import TaskResult
from mmfuse.tasks.generation import AnswerGenerationTask

__all__ = ["GENERATION", "Part", "RLSystem", "check_trainable", "fuse_batch", "rl_config"]


class RLSystem(BaseSystem):
    """The RL stage on :class:`~mmfuse.systems.base.BaseSystem`: the answer generator trained by RL (manual
    optimisation). It builds no loss weighting, regulariser or task-gradient machinery: none applies here.

    Every training batch is one rollout batch: ``rl.samples_per_question`` (G) answers sampled per question
    (``cfg["rl"]``; questions and images encoded and fused once, the fused rows repeated, a question's G answers
    in adjacent rows), scored by the reward, turned into per-token rewards (−β·KL to the frozen ``reference``
    copy, plus the score on the last token; with ``rl.kl.in_loss`` the KL is a loss term instead), advantages
    from the ``rl.advantage`` estimator (``gae`` reads ``value_head`` on the decoder states; the critic-free
    ones build no value head), then ``ppo_epochs`` × ``minibatches`` clipped PPO steps with gradient clipping
    (``optim.grad_clip``). With ``rl.skip_uniform_groups`` the groups whose G scores are all equal are dropped
    and the batch refilled with new training questions (:meth:`refill_batch`, at most ``rl.refill_tries``
    batches; past that it trains on what it has). Dropout is off in every module (as in TRL): the log-probs
    PPO recomputes must equal the rollout's.

    Validation and test run the base's evaluation step (greedy decoding, the same VQA metric), plus, with
    ``rl.eval_sampled``, one sampled answer per question: ``<stage>/sampled/acc`` and ``<stage>/kl``
    (the exact per-state KL to the reference summed along the sampled answer), and the mean ``rl.reward`` of
    the greedy and of the sampled answers, ``<stage>/greedy/reward`` and ``<stage>/sampled/reward``; the test
    split's sampled answers go to ``<run>/eval_test/sampled_answers.json`` (``mmfuse/systems/rl_eval.py``). The
    checkpoint holds the model under the same keys as a supervised one, so ``tools/evaluate.py`` scores it as is.

    Args: those of :class:`~mmfuse.systems.base.BaseSystem`; ``reward`` overrides ``rl.reward`` with a callable
    ``(texts, batch) -> Tensor[B]`` (research code; not stored, pass it again when loading).

    Logged every step: ``rl/score``, ``rl/reward`` (score − β·KL), ``rl/kl`` (per answer), ``rl/beta``,
    ``rl/policy_loss``, ``rl/entropy``, ``rl/approx_kl``, ``rl/clipfrac``, ``rl/answer_length`` (tokens, EOS
    included), ``rl/truncated`` (all over the batch's own sampled answers); with a critic ``rl/value_loss`` and
    ``rl/explained_variance``; with ``rl.kl.in_loss`` ``rl/kl_loss``; with ``rl.skip_uniform_groups``
    ``rl/dropped_groups`` (uniform groups dropped, refills included), ``rl/refills`` (extra batches drawn) and
    ``rl/groups`` (groups trained on: fewer than the batch's questions when the refills ran out).
    """

    sampled_rows: list[dict[str, Any]]  # the test stage's sampled answers, per question (rl_eval.py)

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
        self.advantage = resolve_advantage(self.rl["advantage"], self.rl["algorithm"])
        self.estimator = get_advantage(self.advantage)
        self.group = int(self.rl["samples_per_question"])
        # the critic exists only for an estimator that reads it: not built, trained or checkpointed otherwise
        self.value_head = (ValueHead(self.generator.dim, int(self.rl["value_hidden"])) if self.estimator.critic
                           else None)
        self.refill: RefillFn | None = None  # dynamic sampling's source of new questions (None: the train split)
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
        eval_metrics(self, answer_types, question_types)  # sampled accuracy, KL, rewards: rl_eval.py

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
        """Sample and score G answers per question (rows ``b*G .. b*G + G - 1`` answer question b); also
        returns the policy's question-level fused features (``[B]`` rows: each question fused once)."""
        r, g = self.rl, self.group
        with torch.no_grad():
            fused = fuse_batch(self.model, batch)
            ref_fused = fuse_batch(self.reference, batch) if self.trunk_trained else fused
            rows = group_rows(fused.pooled.shape[0], g, self.device)  # [B * G] each answer's question
            answers = select_rows(fused, rows) if g > 1 else fused  # the fused rows repeated, not recomputed
            ref_answers = (select_rows(ref_fused, rows) if g > 1 else ref_fused) if self.trunk_trained else answers
            roll = collect_rollout(
                self.generator, self.value_head, answers, cast(AnswerGenerator, self.reference.heads[GENERATION]),
                ref_answers, cast(AnswerGenerationTask, self.tasks[GENERATION]).tokenizer.decode_batch,
                repeat_batch(batch, g) if g > 1 else batch, self.reward_fn,
                kl_coef=0.0 if r["kl"]["in_loss"] else self.kl_ctl.value,  # in the loss: not in the reward
                kl_estimator=r["kl"]["estimator"], temperature=r["temperature"], top_k=r["top_k"],
                max_new_tokens=r["max_new_tokens"], truncation=r["truncation"],
                missing_eos_penalty=r["missing_eos_penalty"], generator=self._rng())
        return roll, fused

    def advantages(self, roll: Rollout) -> Advantages:
        """The ``rl.advantage`` estimator on a rollout: advantages ``[N, T]``, the value head's targets (``None``
        without one) and the policy loss's aggregation."""
        r = self.rl
        inp = AdvantageInput(roll.rewards, roll.mask, roll.dones, self.group,
                             roll.values if self.value_head is not None else None, roll.last_value)
        opt = AdvantageOptions(gamma=float(r["gamma"]), lam=float(r["lam"]), lam_critic=float(r["lam_critic"]),
                               lam_length_alpha=r["lam_length_alpha"], scale=bool(r["grpo_scale"]),
                               whiten=bool(r["whiten_advantages"]), min_std=float(r["whiten_min_std"]))
        return self.estimator.fn(inp, opt)

    # -- dynamic sampling (DAPO): mmfuse/systems/rl_sampling.py ------------------------------------------------
    def refill_batch(self, n: int, like: dict[str, Any]) -> dict[str, Any] | None:
        """``n`` new training questions for dynamic sampling (:func:`~mmfuse.systems.rl_sampling.refill_batch`)."""
        return refill_batch(self, n, like)

    def dynamic_sampling(self, first: Part) -> tuple[list[Part], dict[str, int]]:
        """Keep the groups whose scores differ, refill (:func:`~mmfuse.systems.rl_sampling.dynamic_sampling`)."""
        return dynamic_sampling(self, first)

    # -- training ---------------------------------------------------------------------------------------
    def _clock(self) -> float:
        """Seconds, after the device's queued work is done (so a CUDA kernel is timed where it runs)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        r = self.rl
        # again every step: Lightning restores each submodule's own training flag after validation (not through
        # train()), which left dropout on in the policy and its rollout log-probs off the reference's at step 0
        self.train()
        start = self._clock()
        roll, fused = self.rollout(batch)
        parts = [Part(batch, fused, group_rows(fused.pooled.shape[0], self.group, self.device), roll)]
        counts: dict[str, int] = {}
        if r["skip_uniform_groups"]:
            parts, counts = self.dynamic_sampling(parts[0])
        beta = self.kl_ctl.value  # the β these rewards were shaped with (or the KL loss is weighted by)
        stats: dict[str, list[Tensor]] = {}
        train, ret, advantage_s = None, None, 0.0
        if parts:  # else every group was uniform and no refill helped: no update this step
            train = cat_rollouts([p.roll for p in parts], self.generator.pad_id)  # [N, T] the answers trained on
            t0 = self._clock()
            est = self.advantages(train)
            advantage_s = self._clock() - t0  # the estimator alone (GAE's backward scan, or a group's statistics)
            ret = est.returns
            self._update(parts, train, est, beta, stats)
        seq_kl = roll.kl.sum(1)  # [B * G] logged over the batch's own answers, kept or not
        n = roll.tokens.shape[0]
        self.kl_ctl.update(float(seq_kl.mean()), n)
        logged = {f"rl/{k}": torch.stack(v).mean() for k, v in stats.items()}
        reward = roll.scores - beta * seq_kl if r["kl"]["in_loss"] else roll.rewards.sum(1)  # [B * G]
        logged.update({
            "rl/score": roll.scores.mean(), "rl/kl": seq_kl.mean(), "rl/beta": torch.tensor(beta),
            "rl/reward": reward.mean(), "rl/answer_length": roll.mask.sum(1).float().mean(),
            "rl/truncated": roll.truncated.float().mean(),
            **{f"rl/{k}": torch.tensor(float(v)) for k, v in counts.items()},
        })
        if train is not None and ret is not None:
            logged["rl/explained_variance"] = explained_variance(train.values, ret, train.mask)
        if train is not None:
            # the step: rollout, scoring, advantages and every PPO epoch's updates (tools/benchmark_rl.py's share)
            logged["rl/advantage_ms"] = torch.tensor(1e3 * advantage_s)
            logged["rl/step_ms"] = torch.tensor(1e3 * (self._clock() - start))
        for key, value in logged.items():
            self.log(key, value.float(), on_step=True, on_epoch=False, batch_size=n, prog_bar=key == "rl/score")

    def _update(self, parts: list[Part], train: Rollout, est: Advantages, beta: float,
                stats: dict[str, list[Tensor]]) -> None:
        """The PPO (or REINFORCE) update: :func:`~mmfuse.systems.rl_update.ppo_update`."""
        ppo_update(self, parts, train, est, beta, stats)

    # -- evaluation: mmfuse/systems/rl_eval.py ------------------------------------------------------------
    def _update_metrics(self, stage: str, name: str, dataset: str, result: TaskResult,
                        batch: dict[str, Any]) -> None:
        super()._update_metrics(stage, name, dataset, result, batch)
        greedy_reward(self, stage, name, result, batch)  # the reward of the greedy answers just decoded

    def _sampled_eval(self, batch: dict[str, Any], stage: str) -> None:
        """One sampled answer per question scored (:func:`~mmfuse.systems.rl_eval.sampled_eval`)."""
        sampled_eval(self, batch, stage)

    def on_validation_epoch_start(self) -> None:
        self._reseed_eval()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._reseed_eval()
        self.sampled_rows = []  # this test pass's sampled answers (rl_eval.save_sampled writes them)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._sampled_eval(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._sampled_eval(batch, "test")

    def _log_sampled(self, stage: str) -> None:
        """The sampled accuracy, KL and rewards (:func:`~mmfuse.systems.rl_eval.log_sampled`)."""
        log_sampled(self, stage)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_sampled("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_sampled("test")
        save_sampled(self)  # <run>/eval_test/sampled_answers.json

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
        if self.value_head is None:  # a checkpoint from before critic-free runs dropped their (unused) value head
            for key in [k for k in state if k.startswith("value_head.")]:
                del state[key]
        if "mmfuse_kl_controller" in checkpoint:
            self.kl_ctl.load_state_dict(checkpoint["mmfuse_kl_controller"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=float(self.rl["lr"]), betas=tuple(self.cfg["optim"]["betas"]),
                                 weight_decay=0.0)
