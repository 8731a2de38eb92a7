"""``VQADataModule``: sources → ``QARecord`` s → answer vocabulary / tokenizer → tensors.

Everything the model needs to be built (answer vocabulary, tokenizer) is ready after
:meth:`VQADataModule.prepare`, before any batch exists."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mmfuse.data.answer_tokens import AnswerTokenizer
from mmfuse.data.batching import EvalShardSampler, GroupedBatchSampler, QABatchDataset, Questions, as_is
from mmfuse.data.images import ImageLoader, check_images, load_images
from mmfuse.data.mixture import MixtureBatchSampler, MixtureDataset
from mmfuse.data.ragged import RaggedTargets
from mmfuse.data.resumable import ResumableBatchSampler, resume_at, training_position
from mmfuse.data.schema import QARecord
from mmfuse.data.splits import DatasetSpec, carve_validation, dataset_specs, load_split, media_of
from mmfuse.data.streaming import StreamedSplit
from mmfuse.data.tokenizer import build_tokenizer, tokenize_questions
from mmfuse.data.video_store import VideoStore
from mmfuse.data.vocab import AnswerVocab
from mmfuse.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _world_size() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_available() and \
        torch.distributed.is_initialized() else 1
SPLITS = ("train", "val", "test")
__all__ = ["DatasetSpec", "SPLITS", "VQADataModule", "carve_validation", "dataset_specs", "media_of"]


class VQADataModule(L.LightningDataModule):
    """Lightning data module for VQA-style data from any registered source.

    Args:
        data: the ``data`` config node.
        img_size: ``(H, W)`` the image encoder expects (may be set after construction, once
            the model exists: the vocabulary and tokenizer do not depend on it).
        text_pretrained: pretrained text model (its tokenizer is used), or None to train one.
        tokenizer_vocab_size: WordPiece vocabulary size when training a tokenizer.
        run_dir: where the vocabulary and tokenizer are saved (None: not saved).
        seed: seed of the sampler and augmentation.
        vocab, tokenizer, answer_words: reuse these (evaluation, resume) instead of building them from train.
        answer_min_count: answer words seen fewer times become [UNK] (``tasks.answer_generation.min_word_count``).
    """

    img_size: tuple[int, int] | None  # (H, W); set before building tensors

    def __init__(self, data: DictConfig, img_size: tuple[int, int] | None = None, text_pretrained: str | None = None,
                 tokenizer_vocab_size: int = 1000, run_dir: Path | None = None, seed: int = 0,
                 vocab: AnswerVocab | None = None, tokenizer: Any = None, answer_min_count: int = 1,
                 answer_words: list[str] | None = None) -> None:
        super().__init__()
        self.cfg, self.seed = data, seed
        self.img_size = cast(tuple[int, int], tuple(img_size)) if img_size is not None else None
        self.text_pretrained, self.tokenizer_vocab_size = text_pretrained, tokenizer_vocab_size
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.answer_min_count = answer_min_count
        self.vocab, self.tokenizer = vocab, tokenizer
        self.answer_words = answer_words  # the answer generator's word vocabulary (None: built from train)
        self.specs = dataset_specs(data)
        self.records: dict[str, list[QARecord]] = {}  # every dataset's questions of a split, concatenated
        self.by_dataset: dict[str, dict[str, list[QARecord]]] = {s.name: {} for s in self.specs}
        self.datasets: dict[str, Any] = {}  # QABatchDataset (one dataset) or MixtureDataset
        self.skipped: dict[str, int] = {}
        self.split_sizes: dict[tuple[str, str], int] = {}  # (dataset, split) -> questions before data.limit_questions
        self.test_split = "test"  # the split the test loop runs (evaluate() may test on val)
        self.truncated: dict[str, int] = {}  # split (or dataset/split) -> questions cut to max_question_length
        self.padded_videos: dict[str, int] = {}  # split (or dataset/split) -> videos shorter than num_frames
        self.resume_position: dict[str, int] = {}  # from a checkpoint: where the next training pass starts

    # -- records, vocabulary, tokenizer ------------------------------------------------------
    def split_records(self, split: str) -> list[QARecord]:
        """Records of ``split`` (every dataset's, concatenated), with validation carved from train
        when a source has none."""
        if split not in self.records:
            if len(self.specs) == 1:
                self.records[split] = self._load(self.specs[0], split, required=True)
            else:
                self.records[split] = [r for spec in self.specs for r in self._load(spec, split, required=False)]
                if not self.records[split]:
                    raise DataError(f"no dataset of data.mixture has a {split!r} split")
        return self.records[split]

    def dataset_records(self, name: str, split: str) -> list[QARecord]:
        """Records of one dataset's split."""
        if len(self.specs) == 1:
            return self.split_records(split)
        self.split_records(split)
        return self.by_dataset[name].get(split, [])

    def _load(self, spec: DatasetSpec, split: str, required: bool) -> list[QARecord]:
        return load_split(self.by_dataset[spec.name], spec, split, required, self.cfg.limit_questions,
                          self.split_sizes)

    def prepare(self) -> None:
        """Build the answer vocabulary and tokenizer from the training split (saved to run_dir)."""
        if self.vocab is None:
            av = self.cfg.answer_vocab
            self.vocab = AnswerVocab.from_records(self.split_records("train"), av.top_k, av.min_count)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.vocab.save(self.run_dir / "answers.json")
        if self.answer_words is None:
            answers = (a for r in self.split_records("train") for a in r.answers)
            self.answer_words = AnswerTokenizer.from_answers(answers, self.answer_min_count).words
        if self.tokenizer is None:
            questions = None if self.text_pretrained else [r.question for r in self.split_records("train")]
            save = self.run_dir / "tokenizer" if self.run_dir is not None else None
            self.tokenizer = build_tokenizer(self.text_pretrained, questions, self.tokenizer_vocab_size, save)

    # -- tensors ------------------------------------------------------------------------------
    def _build(self, split: str) -> Any:
        """The split's tensors: one ``QABatchDataset``, or a ``MixtureDataset`` of one per dataset."""
        if len(self.specs) == 1:
            return self._build_one(self.specs[0].name, split)
        # a mixture holds in-memory / lazy datasets only (config_checks refuses a prepared entry)
        parts = {spec.name: cast(QABatchDataset, self._build_one(spec.name, split)) for spec in self.specs
                 if self.dataset_records(spec.name, split)}
        self.records[split] = [r for ds in parts.values() for r in ds.records]  # after any skipped records
        return MixtureDataset(parts)

    def _build_one(self, name: str, split: str) -> QABatchDataset | StreamedSplit:
        if self.vocab is None or self.tokenizer is None or self.img_size is None:
            raise RuntimeError("VQADataModule: call prepare() and set img_size before building tensors")
        c = self.cfg
        records = self.dataset_records(name, split)
        key = split if len(self.specs) == 1 else f"{name}/{split}"
        spec = next(s for s in self.specs if s.name == name)
        if spec.source == "prepared":  # images streamed from the prepared chunks: nothing to check or decode here
            streamed = StreamedSplit(str(spec.root), split, self._questions(records, key), self.img_size,
                                     list(c.augment) if split == "train" else [], self.seed)
            if streamed.skipped:  # left out when the dataset was prepared (data.skip_bad_records)
                self.skipped[key] = streamed.skipped
            return streamed
        visuals = self._videos(records, split, key) if media_of(records, key) == "video" else self._images(records)
        keys, bad = visuals.pop("keys"), visuals.pop("bad")
        if bad:
            dropped = {k.image_key for k in bad}
            before = len(records)
            records = [r for r in records if r.image_key not in dropped]
            self.skipped[key] = before - len(records)
            log.warning("%s: skipped %d question(s) with %d unreadable image(s) or video(s), e.g. %s",
                        key, self.skipped[key], len(bad), bad[0].reason)
            if len(self.specs) == 1:
                self.records[split] = records
            else:
                self.by_dataset[name][split] = records
        if not records:
            raise DataError(f"split {split!r} of dataset {name!r} has no usable questions")
        row = {k: i for i, k in enumerate(keys)}
        q = self._questions(records, key)
        return QABatchDataset(
            records, visuals.get("images"), [row[r.image_key] for r in records], q.input_ids, q.targets,
            q.num_answers, q.pad_id, augment_ops=list(c.augment) if split == "train" else [],
            load_image=visuals.get("load_image"), seed=self.seed, videos=visuals.get("videos"),
            skip_bad=bool(c.skip_bad_records),
        )

    def _questions(self, records: list[QARecord], key: str) -> Questions:
        """The questions tokenised and their soft targets (prepare() built the tokenizer and vocabulary).
        Questions longer than ``data.max_question_length`` tokens are cut to it (``[CLS]``, the first tokens,
        ``[SEP]``, as the tokenizer's own truncation does), counted in ``truncated[key]`` and warned once."""
        assert self.vocab is not None and self.tokenizer is not None
        limit = int(self.cfg.max_question_length)
        ids, cut = tokenize_questions(self.tokenizer, [r.question for r in records], limit)
        if cut:
            self.truncated[key] = len(cut)
            log.warning("%s: %d of %d questions are longer than data.max_question_length=%d tokens and were cut "
                        "to it (e.g. question_id %r)", key, len(cut), len(records), limit, records[cut[0]].question_id)
        targets = RaggedTargets(self.vocab.soft_target(r) for r in records)
        return Questions(records, ids, targets, len(self.vocab), int(self.tokenizer.pad_token_id or 0))

    def _images(self, records: list[QARecord]) -> dict[str, Any]:
        """``cache_images``: decode each image once, at the model's size, into one ``[I,3,H,W]`` tensor.
        Otherwise nothing is decoded here: each file's header is checked, and batches decode their own
        images (in the DataLoader's workers) with an :class:`ImageLoader`."""
        assert self.img_size is not None  # _build_one checked it
        skip = bool(self.cfg.skip_bad_records)
        if self.cfg.cache_images:
            images, bad = load_images(records, skip_bad=skip, size=self.img_size, reduced=self.cfg.jpeg_reduced)
            keys = sorted(images)
            return {"keys": keys, "bad": bad, "images": torch.stack([images[k] for k in keys])}  # [I,3,H,W]
        keys, bad = check_images(records, skip_bad=skip)
        return {"keys": keys, "bad": bad, "load_image": ImageLoader(self.img_size, self.cfg.jpeg_reduced)}

    def _videos(self, records: list[QARecord], split: str, key: str) -> dict[str, Any]:
        """A :class:`VideoStore`: random-segment clips for training, uniform ones for evaluation."""
        assert self.img_size is not None  # _build_one checked it
        v = self.cfg.video
        mode = v.train_sampling if split == "train" else "uniform"
        store, keys, bad = VideoStore.build(records, int(v.num_frames), v.frame_stride, mode, self.img_size,
                                            cache=bool(self.cfg.cache_images), skip_bad=bool(self.cfg.skip_bad_records),
                                            where=key)
        if store.num_padded:
            self.padded_videos[key] = store.num_padded
        return {"keys": keys, "bad": bad, "videos": store}

    def setup(self, stage: str | None = None) -> None:
        self.prepare()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": (self.test_split,),
                  "predict": (self.test_split,)}
        for split in wanted.get(stage or "", SPLITS):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)

    def _grouped(self, ds: QABatchDataset, train: bool) -> GroupedBatchSampler:
        c = self.cfg
        return GroupedBatchSampler.of_dataset(ds, c.batch_size if train else c.eval_batch_size, train,
                                              bool(c.group_by_image), self.seed, c.curriculum if train else ())

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.datasets[split] = self._build(split)
        ds, c, train = self.datasets[split], self.cfg, split == "train"
        if isinstance(ds, StreamedSplit):  # LitData shards it across processes itself
            return ds.loader(c.batch_size if train else c.eval_batch_size, shuffle=train, num_workers=c.num_workers)
        if isinstance(ds, MixtureDataset):
            # one dataset per batch: training picks it by data.sampling, evaluation goes dataset by dataset
            subs = [self._grouped(cast(QABatchDataset, sub), train) for sub in ds.datasets]  # built by _build
            sampler: Any = MixtureBatchSampler(subs, ds.offsets, strategy=c.sampling if train else "sequential",
                                               temperature=c.sampling_temperature, seed=self.seed)
        else:
            sampler = self._grouped(ds, train)
        if train:  # per-batch seeds, and a resumed run starts where the checkpoint stood
            sampler = ResumableBatchSampler(sampler, self.seed)
            resume_at(sampler, self.resume_position, _world_size())
        if not train and _world_size() > 1:
            # Evaluation batches go to the processes once each, unpadded (Lightning's wrapper would repeat some,
            # counting their questions twice in the metrics); uneven counts are fine: nothing syncs per step.
            sampler = EvalShardSampler(sampler, torch.distributed.get_world_size(), torch.distributed.get_rank())
        # Training: Lightning wraps the sampler (DistributedSamplerWrapper): each process takes every
        # world_size-th batch of the epoch's order, the last few batches repeated so all get as many.
        # batch_size=None: the sampler yields whole batches (lists), the dataset collates them; as_is, because
        # torch's default per-item conversion would walk every string of the batch (a fifth of a lazy batch's time)
        # generator: the workers' base seed comes from it, not from the global stream that dropout draws from
        # (starting an epoch's iterator must not move the training step's random numbers: exact resume)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=c.num_workers, collate_fn=as_is,
                          persistent_workers=c.num_workers > 0, generator=torch.Generator().manual_seed(self.seed))

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: where training stands in the data (see :func:`training_position`)."""
        return training_position(self.trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resume_position = dict(state_dict)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split)

    def loader(self, split: str) -> DataLoader:
        """Evaluation loader of any split (no shuffling, no augmentation)."""
        return self._loader(split)

    def media(self) -> str:
        """``"image"`` or ``"video"``: what the loaded splits are about (they must agree)."""
        kinds = {media_of(recs, split) for split, recs in self.records.items() if recs}
        if len(kinds) > 1:
            raise DataError(f"the splits mix images and videos ({', '.join(sorted(kinds))}); a run uses one kind")
        return kinds.pop() if kinds else "image"

    def check_media(self, video_model: bool) -> None:
        """The loaded data's media must be what the model encodes (``model.video.enabled``)."""
        media = self.media()
        if (media == "video") != bool(video_model):
            fix = ("model.video.enabled=true (and model.video.pooling)" if media == "video"
                   else "model.video.enabled=false")
            raise ConfigError(f"the data is about {media}s but model.video.enabled is "
                              f"{str(bool(video_model)).lower()}; "
                              f"set {fix}")

    def types(self, field: str) -> list[str]:
        """All answer or question types in the loaded splits (metrics need them up front)."""
        return sorted({getattr(r, field) for recs in self.records.values() for r in recs
                       if getattr(r, field) is not None})
