"""A reference model outside mmfuse's pipeline for Sort-of-CLEVR: is a question type learnable at all, and how fast?

    python tools/soc_reference_cnn.py [--root data/sort_of_clevr] [--types horizontal] [--epochs 5] [--lr 1e-3]
                                      [--pool max|mean] [--no-film] [--question onehot|words] [--mmfuse-image]

Reads the generator's JSONL files and PNGs directly (no data module, tokenizer, Lightning or fusion registry), and
trains a small network: CNN cells (4 stride-2 3x3 convolutions, 32 channels, BatchNorm) with two coordinate channels
appended, a 1x1 convolution to 64 channels, FiLM from the question (γ, β; ``--no-film``: none), ReLU, a max (or mean)
over the 25 cells, then an MLP on [pooled; question]. The question is the one-hot colour and question type
(``onehot``), or a LayerNorm'd mean of learned word embeddings (``words``). ``--mmfuse-image`` replaces the CNN by
mmfuse's VisionEncoder as the Sort-of-CLEVR config builds it (80 px, conv stem, depth 0, coordinates appended).
Adam, batch 64, one CPU thread; prints the validation accuracy per question type after every epoch.

Swapping in mmfuse's parts one at a time bisects a gap: ``--mmfuse-text LAYERS`` (the BERT TextEncoder, 128 wide,
``--text-pool``, ``--text-embed-std``), ``--mmfuse-head`` (the ClassifierHead), ``--qdim`` (the width of the
words / one-hot question), ``--no-q-head`` (the MLP reads the pooled cells only), or ``--mmfuse-model CONFIG
[key=value ...]`` (mmfuse's whole model, ``build_model`` of that config, trained by this loop).

It exists to split "the data or the task is hard" from "mmfuse's pipeline is slow to learn it" (README
"Sort-of-CLEVR").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

COLOURS = ["red", "green", "blue", "orange", "gray", "yellow"]
TYPES = ["shape", "horizontal", "vertical", "closest", "furthest", "count"]


def load(root: Path, split: str, types: list[str], vocab: dict[str, int]) -> tuple[Tensor, ...]:
    """Images ``[I, 3, 75, 75]`` in [0, 1], and per question: image index, colour, type, word ids, answer text."""
    recs = [json.loads(line) for line in (root / f"{split}.jsonl").open()]
    recs = [r for r in recs if r["question_type"] in types]
    paths = sorted({r["image"] for r in recs})
    index = {p: i for i, p in enumerate(paths)}
    pixels = np.stack([np.asarray(Image.open(root / p).convert("RGB")) for p in paths])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    words = [[vocab.setdefault(w, len(vocab)) for w in r["question"].replace("?", " ?").split()] for r in recs]
    width = max(map(len, words))
    return (images, torch.tensor([index[r["image"]] for r in recs]),
            torch.tensor([next(COLOURS.index(w) for w in r["question"].split() if w in COLOURS) for r in recs]),
            torch.tensor([TYPES.index(r["question_type"]) for r in recs]),
            torch.tensor([w + [0] * (width - len(w)) for w in words]), [r["answers"][0] for r in recs])


class Reference(nn.Module):
    """CNN cells + coordinates → 1x1 conv → FiLM(question) → ReLU → pool over cells → MLP([pooled; question])."""

    def __init__(self, answers: int, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.mm = None
        if args.mmfuse_image:
            from mmfuse.encoders.vision import VisionEncoder

            self.mm = VisionEncoder(img_size=80, patch_size=16, embed_dim=128, depth=0, num_heads=4, stem="conv",
                                    coords=True)
            cells = 130
        else:
            layers: list[nn.Module] = []
            c = 3
            for _ in range(4):
                layers += [nn.Conv2d(c, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU()]
                c = 32
            self.cnn = nn.Sequential(*layers)
            cells = 34
        self.proj = nn.Linear(cells, 64)
        self.emb = nn.Embedding(100, args.qdim, padding_idx=0)
        self.norm = nn.LayerNorm(args.qdim)
        q = args.qdim
        self.text = None
        if args.mmfuse_text is not None:
            from mmfuse.config import load_config
            from mmfuse.encoders.text import TextEncoder

            bert = {**load_config().model.text.config, "num_hidden_layers": int(args.mmfuse_text)}  # base.yaml's
            self.text = TextEncoder(config=bert, vocab_size=100, pad_token_id=0, pool=args.text_pool,
                                    embed_init_std=args.text_embed_std)
            q = self.text.out_dim
        self.film = nn.Linear(q, 128)
        if args.mmfuse_head:
            from mmfuse.heads import ClassifierHead

            self.head = ClassifierHead(64 + q * (not args.no_q_head), answers)
        else:
            self.out = nn.Sequential(nn.Linear(64 + q * (not args.no_q_head), 128), nn.ReLU(), nn.Linear(128, answers))

    def cells(self, x: Tensor) -> Tensor:
        """``[B, 3, 75, 75]`` → ``[B, 25, C]`` cell features with (x, y) in [-1, 1] as the last two channels."""
        if self.mm is not None:
            x = F.interpolate(x, size=80, mode="bilinear", antialias=True)
            mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
            return self.mm((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).tokens
        f = self.cnn(x)  # [B, 32, 5, 5]
        b, _, h, w = f.shape
        gy, gx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        grid = torch.stack([gx, gy]).expand(b, 2, h, w)
        return torch.cat([f, grid], 1).flatten(2).transpose(1, 2)

    def forward(self, x: Tensor, colour: Tensor, qtype: Tensor, words: Tensor) -> Tensor:
        if self.text is not None:
            q = self.text(words, (words > 0).long()).pooled  # [B, hidden_size]
        elif self.args.question == "words":
            valid = (words > 0).float()[..., None]
            q = self.norm((self.emb(words) * valid).sum(1) / valid.sum(1))  # [B, 12]
        else:
            q = torch.cat([F.one_hot(colour, 6), F.one_hot(qtype, 6)], 1).float()
            q = F.pad(q, (0, self.args.qdim - 12))
        gamma, beta = self.film(q)[:, None].chunk(2, -1)  # [B, 1, 64] each
        if self.args.no_film:
            gamma, beta = gamma * 0, beta * 0
        h = torch.relu((1 + gamma) * self.proj(self.cells(x)) + beta)  # [B, 25, 64]
        pooled = h.amax(1) if self.args.pool == "max" else h.mean(1)
        feats = pooled if self.args.no_q_head else torch.cat([pooled, q], 1)
        if self.args.mmfuse_head:
            from mmfuse.fusion import FusionOutput

            return self.head(FusionOutput(pooled=feats, tokens=h, mask=torch.ones(h.shape[:2], dtype=torch.bool)))
        return self.out(feats)


class MmfuseModel(nn.Module):
    """The whole mmfuse model of a config (``--mmfuse-model CONFIG key=value ...``) under this loop: question word
    ids as BERT input ids, images resized to the model's size and normalised as the data path does."""

    def __init__(self, answers: int, args: argparse.Namespace) -> None:
        super().__init__()
        from mmfuse.config import load_config
        from mmfuse.model import build_model

        cfg = load_config(args.mmfuse_model[0], args.mmfuse_model[1:])
        self.model = build_model(cfg, num_answers=answers, text_vocab_size=100)

    def forward(self, x: Tensor, colour: Tensor, qtype: Tensor, words: Tensor) -> Tensor:
        x = F.interpolate(x, size=self.model.image_size, mode="bilinear", antialias=True)
        x = (x - self.model.mean.view(1, 3, 1, 1)) / self.model.std.view(1, 3, 1, 1)
        batch = {"text": {"input_ids": words, "attention_mask": (words > 0).long()}, "image": x}
        return self.model(batch)["vqa"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("data/sort_of_clevr"))
    p.add_argument("--types", nargs="+", default=TYPES, choices=TYPES)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pool", choices=["max", "mean"], default="max")
    p.add_argument("--no-film", action="store_true")
    p.add_argument("--question", choices=["onehot", "words"], default="onehot")
    p.add_argument("--mmfuse-image", action="store_true")
    p.add_argument("--no-q-head", action="store_true", help="the MLP reads the pooled cells only, not [pooled; q]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mmfuse-text", type=int, metavar="LAYERS", help="the question by mmfuse's BERT TextEncoder")
    p.add_argument("--text-pool", default="mean", choices=["mean", "max", "cls"], help="--mmfuse-text: pooling")
    p.add_argument("--qdim", type=int, default=12, help="width of the question vector (words / onehot)")
    p.add_argument("--text-embed-std", type=float, help="--mmfuse-text: word embeddings from N(0, std^2)")
    p.add_argument("--mmfuse-head", action="store_true", help="mmfuse's ClassifierHead instead of the MLP")
    p.add_argument("--mmfuse-model", nargs="+", metavar="CONFIG [KEY=VALUE ...]",
                   help="train mmfuse's whole model (build_model of this config) in this loop instead")
    args = p.parse_args()
    if args.qdim < 12 and args.question == "onehot" and args.mmfuse_text is None:
        p.error(f"--qdim {args.qdim}: the one-hot question (6 colours + 6 types) needs at least 12")
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    vocab = {"<pad>": 0}
    train, val = load(args.root, "train", args.types, vocab), load(args.root, "val", args.types, vocab)
    answers = sorted(set(train[5]))
    y_train = torch.tensor([answers.index(a) for a in train[5]])
    y_val = torch.tensor([answers.index(a) if a in answers else -1 for a in val[5]])
    model: nn.Module = MmfuseModel(len(answers), args) if args.mmfuse_model else Reference(len(answers), args)
    opt = torch.optim.Adam(model.parameters(), args.lr)
    start, n = time.time(), len(y_train)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
        for s in range(0, n, 64):
            b = order[s:s + 64]
            logits = model(train[0][train[1][b]], train[2][b], train[3][b], train[4][b])
            loss = F.cross_entropy(logits, y_train[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(val[0][val[1][i:i + 1000]], val[2][i:i + 1000], val[3][i:i + 1000],
                                    val[4][i:i + 1000]).argmax(1) for i in range(0, len(y_val), 1000)])
        right = (pred == y_val).float()
        per_type = {t: round(100 * right[val[3] == k].mean().item(), 1) for k, t in enumerate(TYPES) if t in args.types}
        print(f"epoch {epoch}: {per_type} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
