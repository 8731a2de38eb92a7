"""The runner: what every entry point (``train``, ``evaluate``, cross-validation, sweeps, benchmarks) builds
the same way: the run directory, the data module, the Lightning ``Trainer`` and a system from its
checkpoint. It sits below the entry points, which import it and never each other."""

from __future__ import annotations

import contextlib
import csv
import os
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import _get_rank
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig
from torch import nn

from mmfuse.callbacks import DroppedQuestions
from mmfuse.checkpoints import AtomicCheckpointIO, read_checkpoint
from mmfuse.data.datamodule import VQADataModule
from mmfuse.data.tokenizer import tokenizer_from_json
from mmfuse.data.vocab import AnswerVocab
from mmfuse.errors import ConfigError
from mmfuse.systems import SYSTEMS, BaseSystem

__all__ = ["RUN_DIR_ENV", "build_datamodule", "build_trainer", "load_system", "make_run_dir", "process_rank",
           "progress_bar", "shared_run_dir",
           "compile_model", "resumed_vocabularies", "skipped_records", "system_kwargs"]


RUN_DIR_ENV = "MMFUSE_RUN_DIR"  # the run directory, for the processes Lightning launches for the same run


def process_rank() -> int:
    """This process's global rank as its launcher set it (Lightning's own, torchrun, SLURM); 0 when alone.
    Known before any process group exists."""
    return _get_rank() or 0


def make_run_dir(cfg: DictConfig) -> Path:
    """``cfg.run_dir``, else ``<output_dir>/<name>/<timestamp>`` (made unique).

    Every process of a distributed run must agree: the processes Lightning launches inherit the directory
    of the first (:func:`shared_run_dir`); processes started by torchrun or SLURM use the job's id, and
    without one ``run_dir`` must be given."""
    inherited = os.environ.get(RUN_DIR_ENV)
    elastic = os.environ.get("TORCHELASTIC_RUN_ID", "none")  # torchrun's "none" is no id
    job = elastic if elastic != "none" else os.environ.get("SLURM_JOB_ID")
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    elif inherited:
        path = Path(inherited)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not job:
            raise ConfigError("a distributed run started by an external launcher needs run_dir=<shared folder> "
                              "(every process must write to the same run directory)")
        path = Path(cfg.output_dir) / cfg.name / f"job-{job}"
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.output_dir) / cfg.name / stamp
        n = 1
        while path.exists():
            path, n = Path(cfg.output_dir) / cfg.name / f"{stamp}-{n}", n + 1
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def shared_run_dir(path: Path) -> Iterator[None]:
    """Within the block, processes launched for this run (Lightning's DDP launcher starts them inside
    ``trainer.fit``) inherit ``path`` as their run directory."""
    before = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = before


def build_datamodule(cfg: DictConfig, run_dir: Path | None = None, **kwargs: Any) -> VQADataModule:
    """The data module of ``cfg.data``; call ``prepare()`` to get the vocabulary and tokenizer."""
    return VQADataModule(cfg.data, img_size=None, text_pretrained=cfg.model.text.pretrained,
                         tokenizer_vocab_size=cfg.model.text.tokenizer_vocab_size, run_dir=run_dir,
                         seed=cfg.seed, answer_min_count=cfg.tasks.answer_generation.min_word_count, **kwargs)


def system_kwargs(dm: VQADataModule) -> dict[str, Any]:
    """What a system needs from the prepared data module besides the config and the answers: the text
    vocabulary size and padding id, every answer and question type, the answer words."""
    tok = dm.tokenizer
    return {"text_vocab_size": len(tok), "pad_token_id": int(tok.pad_token_id or 0),
            "answer_types": dm.types("answer_type"), "question_types": dm.types("question_type"),
            "answer_words": dm.answer_words}


def progress_bar(cfg: DictConfig) -> list[L.Callback]:
    """Lightning's TQDM progress bar, redrawn every ``trainer.progress_bar_refresh_rate`` steps."""
    if not cfg.trainer.enable_progress_bar:
        return []
    return [TQDMProgressBar(refresh_rate=max(1, cfg.trainer.progress_bar_refresh_rate))]


class AppendingCSVLogger(CSVLogger):
    """Lightning's CSV logger writing ``<run>/logs/metrics.csv``, except that a run resumed into its own
    directory keeps the rows logged before its checkpoint's step (Lightning's writer deletes an existing
    ``metrics.csv`` when it starts): the file holds the whole history, not only what came after the resume."""

    def __init__(self, save_dir: str, keep_before_step: int | None = None) -> None:
        super().__init__(save_dir, name="", version="logs")
        self._earlier: list[dict[str, str]] = []
        path = Path(save_dir) / "logs" / "metrics.csv"
        if keep_before_step is not None and path.is_file():
            with path.open(newline="") as f:
                self._earlier = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)
                                 if row.get("step") and int(float(row["step"])) < keep_before_step]

    @property
    def experiment(self) -> Any:
        fresh = self._experiment is None
        writer = super().experiment
        if fresh and self._earlier and isinstance(getattr(writer, "metrics", None), list):  # (rank 0's writer)
            # queued ahead of the new rows; written at the first save
            writer.metrics[:0] = self._earlier
            self._earlier = []
        return writer


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[L.Callback], logger: bool = True) -> L.Trainer:
    """A ``Trainer`` from ``cfg.trainer`` writing into ``run_dir`` (``logger=False``: no logger, as in evaluation)."""
    t = cfg.trainer
    # mmfuse logs epoch values its torchmetrics objects have already synced across processes; Lightning's
    # advice to add sync_dist=True to those would reduce them a second time
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.* when logging on epoch level in distributed")
    if t.num_threads:
        torch.set_num_threads(int(t.num_threads))
    loggers: list[Any] = []
    if logger and t.logger == "csv":
        resumed_at = None
        if cfg.get("resume") and (run_dir / "logs" / "metrics.csv").is_file():  # resumed into its own run
            resumed_at = int(read_checkpoint(cfg.resume, trust=bool(cfg.trust_checkpoint), mmap=True)["global_step"])
        loggers.append(AppendingCSVLogger(str(run_dir), resumed_at))
    elif logger and t.logger == "tensorboard":
        loggers.append(TensorBoardLogger(str(run_dir), name="", version="tensorboard"))
    # a wall-clock budget (Lightning's Timer: checked after every batch, its elapsed time saved in checkpoints)
    max_time = timedelta(minutes=float(t.max_minutes)) if t.get("max_minutes") else None
    return L.Trainer(
        max_epochs=t.max_epochs, max_steps=t.max_steps, max_time=max_time, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy, precision=t.precision, log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, limit_test_batches=t.limit_test_batches,
        enable_progress_bar=t.enable_progress_bar, deterministic=t.deterministic,
        # manual optimisation (RL) clips inside its own step; Lightning refuses gradient_clip_val there
        gradient_clip_val=None if cfg.stage == "rl" else cfg.optim.grad_clip or None, default_root_dir=str(run_dir),
        logger=loggers or False, callbacks=[*callbacks, *progress_bar(cfg)], plugins=[AtomicCheckpointIO()],
    )


def skipped_records(dm: VQADataModule, dropped: DroppedQuestions) -> dict[str, int]:
    """Questions skipped for unreadable images, per split: those dropped at start-up (missing files, bad
    headers, or any decode failure on the in-memory path) plus those batches dropped while decoding."""
    skipped = dict(dm.skipped)
    for split, n in dropped.counts().items():
        skipped[split] = skipped.get(split, 0) + n
    return skipped


def compile_model(cfg: DictConfig, system: BaseSystem) -> None:
    """``trainer.compile``: compile the system's model in place (``nn.Module.compile``, so parameter names and
    checkpoints are unchanged) with ``trainer.compile_backend`` / ``compile_mode``. Batches vary in size, so
    shapes are marked dynamic after the first recompile (torch's default)."""
    t = cfg.trainer
    if t.compile:
        system.model.compile(backend=t.compile_backend, mode=t.compile_mode)


def resumed_vocabularies(resume: str | None, trust_checkpoint: bool = False) -> dict[str, Any]:
    """The tokenizer and vocabularies a resumed run keeps from its checkpoint: training a WordPiece tokenizer
    again may number tied tokens differently, which would scramble the trained embeddings. ``{}`` for None."""
    if not resume:
        return {}
    ckpt = read_checkpoint(resume, trust=trust_checkpoint, mmap=True)
    hp = ckpt["hyper_parameters"]
    if ckpt.get("mmfuse_tokenizer") is None:
        raise ValueError(f"{resume}: checkpoint holds no tokenizer (not written by mmfuse.train?)")
    return {"vocab": AnswerVocab(hp["answers"]), "tokenizer": tokenizer_from_json(ckpt["mmfuse_tokenizer"]),
            "answer_words": hp.get("answer_words")}


def load_system(checkpoint: str, fusion: nn.Module | None = None, trust_checkpoint: bool = False) -> BaseSystem:
    """A trained system from its checkpoint alone (config, vocabulary and tokenizer inside): the class of
    the checkpoint's ``stage`` (``SupervisedSystem`` or ``RLSystem``); both are evaluated the same way.
    Plain data only (``weights_only``) unless ``trust_checkpoint`` (see :mod:`mmfuse.checkpoints`)."""
    kwargs: dict[str, Any] = {"fusion": fusion} if fusion is not None else {}
    hp = read_checkpoint(checkpoint, trust=trust_checkpoint, mmap=True).get("hyper_parameters", {})
    cls = SYSTEMS[(hp.get("cfg") or {}).get("stage") or "supervised"]
    return cls.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=not trust_checkpoint, **kwargs)
