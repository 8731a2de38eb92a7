"""``train(cfg)`` and ``evaluate(cfg)``: what ``tools/`` and the tests call."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig
from torch import nn

from mmfuse.callbacks import SpeedMonitor
from mmfuse.config import save_config, to_container
from mmfuse.data.datamodule import VQADataModule
from mmfuse.data.schema import QARecord
from mmfuse.data.tokenizer import tokenizer_from_json, tokenizer_to_json
from mmfuse.data.vocab import AnswerVocab
from mmfuse.evaluation.run import evaluate, finish_datasets, training_targets
from mmfuse.rl.rewards import RewardFn
from mmfuse.systems import SupervisedSystem
from mmfuse.systems.rl import RLSystem, rl_config
from mmfuse.utils import write_json

log = logging.getLogger(__name__)
__all__ = ["build_datamodule", "evaluate", "load_system", "make_run_dir", "train"]


def make_run_dir(cfg: DictConfig) -> Path:
    """``cfg.run_dir`` or ``<output_dir>/<name>/<timestamp>`` (made unique)."""
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.output_dir) / cfg.name / stamp
        n = 1
        while path.exists():
            path, n = Path(cfg.output_dir) / cfg.name / f"{stamp}-{n}", n + 1
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_datamodule(cfg: DictConfig, run_dir: Optional[Path] = None, **kwargs: Any) -> VQADataModule:
    """The data module of ``cfg.data``; call ``prepare()`` to get the vocabulary and tokenizer."""
    return VQADataModule(cfg.data, img_size=None, text_pretrained=cfg.model.text.pretrained,
                         tokenizer_vocab_size=cfg.model.text.tokenizer_vocab_size, run_dir=run_dir,
                         seed=cfg.seed, answer_min_count=cfg.tasks.answer_generation.min_word_count, **kwargs)


def progress_bar(cfg: DictConfig) -> list[L.Callback]:
    """Lightning's TQDM progress bar, redrawn every ``trainer.progress_bar_refresh_rate`` steps."""
    if not cfg.trainer.enable_progress_bar:
        return []
    return [TQDMProgressBar(refresh_rate=max(1, cfg.trainer.progress_bar_refresh_rate))]


def _trainer(cfg: DictConfig, run_dir: Path, callbacks: list[L.Callback], logger: bool = True) -> L.Trainer:
    t = cfg.trainer
    if t.num_threads:
        torch.set_num_threads(int(t.num_threads))
    loggers: list[Any] = []
    if logger and t.logger == "csv":
        loggers.append(CSVLogger(str(run_dir), name="", version="logs"))
    elif logger and t.logger == "tensorboard":
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tensorboard"))
    return L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        strategy=t.strategy, precision=t.precision, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, limit_test_batches=t.limit_test_batches,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic,
        # manual optimisation (RL) clips inside its own step; Lightning refuses gradient_clip_val there
        gradient_clip_val=None if cfg.stage == "rl" else cfg.optim.grad_clip or None, default_root_dir=str(run_dir),
        logger=loggers or False, callbacks=[*callbacks, *progress_bar(cfg)],
    )


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def train(cfg: DictConfig, fusion: Optional[nn.Module] = None,
          records: Optional[dict[str, list[QARecord]]] = None, reward: Optional[RewardFn] = None) -> dict[str, Any]:
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
    L.seed_everything(cfg.seed, workers=True)
    rl = cfg.stage == "rl"
    init: Optional[dict[str, Any]] = None
    if rl:
        cfg, init = rl_config(cfg)
    run_dir = make_run_dir(cfg)
    save_config(cfg, run_dir / "config.yaml")
    dm = build_datamodule(cfg, run_dir, **_resumed_vocabularies(cfg.resume or (cfg.rl.init_from if rl else None)))
    dm.records.update(records or {})
    dm.prepare()
    for split in ("train", "val", "test"):
        dm.split_records(split)
    dm.check_media(bool(cfg.model.video.enabled))
    tok = dm.tokenizer
    kwargs: dict[str, Any] = {"reward": reward} if rl else {}
    system = (RLSystem if rl else SupervisedSystem)(
        to_container(cfg), dm.vocab.answers, text_vocab_size=len(tok), pad_token_id=int(tok.pad_token_id or 0),
        answer_types=dm.types("answer_type"), question_types=dm.types("question_type"), fusion=fusion,
        answer_words=dm.answer_words, **kwargs)
    if init is not None and not cfg.resume:
        system.load_supervised(init["state_dict"])
    system.tokenizer_json = tokenizer_to_json(tok)
    dm.img_size = system.model.image_size
    ckpt = ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), monitor=cfg.checkpoint.monitor,
                           mode=cfg.checkpoint.mode, filename="best-{epoch:02d}-{step}", auto_insert_metric_name=False)
    speed = SpeedMonitor()
    callbacks: list[L.Callback] = [ckpt, speed]
    if cfg.checkpoint.save_last:
        # Lightning 2.6's save_last writes last.ckpt only when a best checkpoint is written at the same
        # step, so it stops at the best epoch; a monitor-less callback rewrites it every epoch instead.
        callbacks.append(ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="last", monitor=None,
                                         save_top_k=1, enable_version_counter=False))
    if cfg.trainer.logger != "none":
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    trainer = _trainer(cfg, run_dir, callbacks)
    trainer.fit(system, datamodule=dm, ckpt_path=cfg.resume)
    fit_s = time.perf_counter() - start
    best = ckpt.best_model_path or None
    test = trainer.test(system, datamodule=dm, ckpt_path=best or None, verbose=False)[0]
    evaluation = finish_datasets(run_dir / "eval_test", dm, system.predictions, cfg, "test", best)
    if len(system.active) > 1:
        from mmfuse.viz.multitask import write_multitask_plot

        write_multitask_plot(run_dir)
    result = {
        "run_dir": str(run_dir),
        "best_checkpoint": best,
        "best_val": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
        "test": _floats(test),
        "test_accuracy": evaluation["accuracy"],
        "test_tasks": {t: float(test[f"test/{t}/acc"]) for t in system.active if f"test/{t}/acc" in test},
        "test_leakage": evaluation["leakage"],
        "config_hash": evaluation["config_hash"],
        "num_questions": {s: len(dm.records.get(s, [])) for s in ("train", "val", "test")},
        "skipped_bad_records": dict(dm.skipped),
        "padded_short_videos": dict(dm.padded_videos),
        "train_samples_per_s": speed.samples_per_s,
        "fit_seconds": fit_s,
        "wall_seconds": time.perf_counter() - start,
        "training_targets": training_targets(cfg),
        "answer_vocabulary_size": len(dm.vocab),
    }
    if rl:
        result["rl"] = {"init_from": str(cfg.rl.init_from), "temperature": float(cfg.rl.temperature),
                        "test_sampled_accuracy": test.get("test/sampled/acc"), "test_kl_to_reference": test.get("test/kl")}
    write_json(run_dir / "metrics.json", result)
    if dm.skipped:
        log.warning("skipped %d question(s) with unreadable images: %s", sum(dm.skipped.values()), dm.skipped)
    return result


def _resumed_vocabularies(resume: Optional[str]) -> dict[str, Any]:
    """A resumed run keeps its checkpoint's tokenizer and vocabularies: training a WordPiece tokenizer
    again may number tied tokens differently, which would scramble the trained embeddings."""
    if not resume:
        return {}
    ckpt = torch.load(resume, map_location="cpu", weights_only=False, mmap=True)
    hp = ckpt["hyper_parameters"]
    if ckpt.get("mmfuse_tokenizer") is None:
        raise ValueError(f"{resume}: checkpoint holds no tokenizer (not written by mmfuse.train?)")
    return {"vocab": AnswerVocab(hp["answers"]), "tokenizer": tokenizer_from_json(ckpt["mmfuse_tokenizer"]),
            "answer_words": hp.get("answer_words")}


def load_system(checkpoint: str, fusion: Optional[nn.Module] = None) -> SupervisedSystem:
    """A trained system from its checkpoint alone (config, vocabulary and tokenizer inside); an RL
    checkpoint gives an :class:`RLSystem` (a SupervisedSystem: evaluated the same way)."""
    kwargs = {"fusion": fusion} if fusion is not None else {}
    hp = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True).get("hyper_parameters", {})
    cls = RLSystem if (hp.get("cfg") or {}).get("stage") == "rl" else SupervisedSystem
    return cls.load_from_checkpoint(checkpoint, map_location="cpu", **kwargs)
