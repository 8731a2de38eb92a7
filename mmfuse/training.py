"""``train(cfg)``: the supervised or RL training run that ``tools/train.py``, sweeps and tests call."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig
from torch import nn

from mmfuse.callbacks import BatchAudit, DroppedQuestions, SpeedMonitor
from mmfuse.checkpoints import check_checkpoint
from mmfuse.config import save_config, to_container
from mmfuse.config_checks import check_image_pool
from mmfuse.data.batching import curriculum_stages
from mmfuse.data.schema import QARecord
from mmfuse.data.tokenizer import tokenizer_to_json
from mmfuse.evaluation.outputs import finish_datasets, training_targets
from mmfuse.rl.rewards import RewardFn
from mmfuse.runner import (
    build_datamodule,
    build_trainer,
    compile_model,
    make_run_dir,
    process_rank,
    resumed_vocabularies,
    shared_run_dir,
    skipped_records,
    system_kwargs,
)
from mmfuse.systems import BaseSystem, RLSystem, SupervisedSystem
from mmfuse.systems.rl import rl_config
from mmfuse.utils import write_json

log = logging.getLogger(__name__)
__all__ = ["train"]


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def train(cfg: DictConfig, fusion: nn.Module | None = None,
          records: dict[str, list[QARecord]] | None = None, reward: RewardFn | None = None) -> dict[str, Any]:
    """Train on ``cfg``, test the best checkpoint, write ``metrics.json``; returns its content.

    ``stage: supervised`` trains the active tasks; ``stage: rl`` fine-tunes the answer generator of
    ``rl.init_from`` with PPO (its model, tasks, tokenizer and vocabularies are reused).

    Args:
        cfg: a config from :func:`mmfuse.load_config`.
        fusion: optional built fusion module replacing ``model.fusion.name`` (research code).
        records: optional ``{"train", "val", "test"}`` question lists used instead of loading
            ``cfg.data``'s splits (cross-validation folds).
        reward: RL only: a callable ``(texts, batch) -> Tensor[B]`` replacing ``rl.reward``.
    """
    start = time.perf_counter()
    trust = bool(cfg.trust_checkpoint)
    if cfg.resume:  # refused before anything is built if it needs more than plain data
        check_checkpoint(cfg.resume, trust)
    L.seed_everything(cfg.seed, workers=True)
    rl = cfg.stage == "rl"
    if not rl and not cfg.resume:  # a new model only: checkpoints of such models still load and evaluate
        check_image_pool(cfg)
    init: dict[str, Any] | None = None
    if rl:
        cfg, init = rl_config(cfg)
    existed = bool(cfg.run_dir) and Path(cfg.run_dir).exists()
    run_dir = make_run_dir(cfg)
    try:
        return _run(cfg, run_dir, start, trust, init, fusion, records, reward)
    except BaseException:
        # a run that fails before its first checkpoint leaves nothing behind (a folder it did not make, or
        # one holding a checkpoint, stays: the message may point at that checkpoint)
        if process_rank() == 0 and not existed and not any(run_dir.glob("checkpoints/*.ckpt")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters of the model (encoders, fusion, heads; not an RL reference copy): all, trainable, fusion."""
    fusion = getattr(model, "fusion", None)
    return {"total": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "fusion": sum(p.numel() for p in fusion.parameters()) if isinstance(fusion, nn.Module) else 0}


def _run(cfg: DictConfig, run_dir: Path, start: float, trust: bool, init: dict[str, Any] | None,
         fusion: nn.Module | None, records: dict[str, list[QARecord]] | None, reward: RewardFn | None
         ) -> dict[str, Any]:
    rl = init is not None
    zero = process_rank() == 0  # the run directory's files are written once, by the first process
    if zero:
        save_config(cfg, run_dir / "config.yaml")
    dm = build_datamodule(cfg, run_dir if zero else None,
                          **resumed_vocabularies(cfg.resume or (cfg.rl.init_from if rl else None), trust))
    dm.records.update(records or {})
    dm.prepare()
    assert dm.vocab is not None  # prepare() built it
    for split in ("train", "val", "test"):
        dm.split_records(split)
    dm.check_media(bool(cfg.model.video.enabled))
    curriculum_stages(cfg.data.curriculum, dm.split_records("train"))  # a stage's types exist: checked before training
    tok = dm.tokenizer
    args = (to_container(cfg), dm.vocab.answers)
    kwargs: dict[str, Any] = {**system_kwargs(dm), "fusion": fusion}
    system: BaseSystem
    if init is not None:
        system = RLSystem(*args, **kwargs, reward=reward)
        if not cfg.resume:
            system.load_supervised(init["state_dict"])
    else:
        system = SupervisedSystem(*args, **kwargs)
    system.tokenizer_json = tokenizer_to_json(tok)
    compile_model(cfg, system)
    dm.img_size = system.model.image_size
    ckpt = ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), monitor=cfg.checkpoint.monitor,
                           mode=cfg.checkpoint.mode, filename="best-{epoch:02d}-{step}", auto_insert_metric_name=False)
    speed, dropped = SpeedMonitor(), DroppedQuestions()
    callbacks: list[L.Callback] = [ckpt, speed, dropped]
    if cfg.checkpoint.save_last:
        # Lightning 2.6's save_last writes last.ckpt only when a best checkpoint is written at the same
        # step, so it stops at the best epoch; a monitor-less callback rewrites it every epoch instead.
        callbacks.append(ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="last", monitor=None,
                                         save_top_k=1, enable_version_counter=False))
    if cfg.checkpoint.every_n_steps:  # last.ckpt also every N steps: a killed run loses at most N steps
        callbacks.append(ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="last", monitor=None,
                                         save_top_k=1, enable_version_counter=False,
                                         every_n_train_steps=int(cfg.checkpoint.every_n_steps)))
    if cfg.trainer.logger != "none":
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if cfg.trainer.audit_batches:
        callbacks.append(BatchAudit(run_dir / "audit"))
    trainer = build_trainer(cfg, run_dir, callbacks)
    with shared_run_dir(run_dir):  # a DDP launcher starts the other processes inside fit
        trainer.fit(system, datamodule=dm, ckpt_path=cfg.resume, weights_only=not trust)
    fit_s = time.perf_counter() - start
    best = ckpt.best_model_path or None
    test = trainer.test(system, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=not trust)[0]
    skipped = skipped_records(dm, dropped)  # every process takes part (gathers the counts)
    if not trainer.is_global_zero:  # the test predictions were gathered on every process; one writes them
        return {"run_dir": str(run_dir), "global_rank": trainer.global_rank, "best_checkpoint": best}
    evaluation = finish_datasets(run_dir / "eval_test", dm, system.predictions, cfg, "test", best)
    if len(system.active) > 1:
        from mmfuse.viz.multitask import write_multitask_plot

        write_multitask_plot(run_dir)
    result = {
        "run_dir": str(run_dir),
        "global_rank": 0,
        "world_size": trainer.world_size,
        "best_checkpoint": best,
        "best_val": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
        "test": _floats(test),
        "test_accuracy": evaluation["accuracy"],
        "test_evaluated": {k: evaluation[k] for k in ("num_questions", "num_questions_in_split",
                                                       "evaluation_limited_by")},
        "test_tasks": {t: float(test[f"test/{t}/acc"]) for t in system.active if f"test/{t}/acc" in test},
        "test_leakage": evaluation["leakage"],
        "config_hash": evaluation["config_hash"],
        "num_questions": {s: len(dm.records.get(s, [])) for s in ("train", "val", "test")},
        "skipped_bad_records": skipped,
        "nonfinite_skipped_batches": system.nonfinite_skipped,  # loss.nonfinite=skip_batch
        "padded_short_videos": dict(dm.padded_videos),
        "truncated_questions": dict(dm.truncated),
        "train_samples_per_s": speed.samples_per_s,
        # from the call of train() (the data read and checked, the model built) to the first training batch
        "seconds_to_first_step": None if speed.first_step_at is None else speed.first_step_at - start,
        "fit_seconds": fit_s,
        "wall_seconds": time.perf_counter() - start,
        "training_targets": training_targets(cfg),
        "answer_vocabulary_size": len(dm.vocab),
        "parameters": parameter_counts(system.model),
    }
    if rl:
        result["rl"] = {"init_from": str(cfg.rl.init_from), "temperature": float(cfg.rl.temperature),
                        "test_sampled_accuracy": test.get("test/sampled/acc"),
                        "test_kl_to_reference": test.get("test/kl")}
    write_json(run_dir / "metrics.json", result)
    if skipped:
        log.warning("skipped %d question(s) with unreadable images: %s", sum(skipped.values()), skipped)
    return result
