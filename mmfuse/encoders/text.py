"""BERT text encoder (HF ``transformers``): pretrained (hub name or local directory) or random init."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from mmfuse.encoders.base import EncoderOutput
from mmfuse.layers import masked_max, masked_mean

TEXT_POOLS = ("mean", "max", "cls")


class TextEncoder(nn.Module):
    """A ``BertModel`` whose token states become an :class:`EncoderOutput`.

    Args:
        pretrained: hub name or local directory of a BERT-family checkpoint; None builds a
            randomly initialised model from ``config``.
        config: ``BertConfig`` fields for random init (ignored when ``pretrained`` is set).
        vocab_size: tokenizer vocabulary size (random init only; a pretrained model has its own).
        pad_token_id: id of the padding token.
        freeze: stop gradients into the encoder.
        dedupe: encode each distinct question of a batch once (templated benchmarks; see
            ``_encode_distinct``: same values, different float rounding, so off by default).
        pool: the question vector: ``"mean"`` (masked mean of the token states, the default), ``"max"``
            (per-channel max over the real tokens: one word that differs between two questions, such as a
            colour, keeps its whole weight instead of 1/length of it) or ``"cls"`` (the first token's state).
        embed_init_std: random init only: redraw the word-embedding table from ``N(0, std²)`` (the padding
            row stays zero); None keeps BERT's ``initializer_range`` (0.02). Under LayerNorm only a row's
            direction matters, so Adam's per-step change of an embedding, about ``lr`` per coordinate, is
            ``lr / std`` of its size: a 0.02 table trained from scratch at 3e-4–1e-3 turns by several percent a
            step and the rare content words that carry a templated question (Sort-of-CLEVR's colours) are
            scrambled before anything reads them (README "Sort-of-CLEVR"); 1.0 is ``nn.Embedding``'s default.

    Shapes:
        ``forward(input_ids [B,L], attention_mask [B,L])`` → tokens ``[B,L,D]``, mask ``[B,L]``
        bool, pooled ``[B,D]`` (``pool``; the default masked mean of the token states, unlike BERT's CLS
        pooler, needs no pre-training to be meaningful).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        freeze: bool = False,
        dedupe: bool = False,
        pool: str = "mean",
        embed_init_std: float | None = None,
    ) -> None:
        super().__init__()
        if pool not in TEXT_POOLS:
            raise ValueError(f"unknown text pool {pool!r}; valid: {', '.join(TEXT_POOLS)}")
        self.pool = pool
        self.is_pretrained = pretrained is not None
        if pretrained is not None:
            self.bert = BertModel.from_pretrained(pretrained, add_pooling_layer=False)
        else:
            fields = dict(config or {})
            if vocab_size is not None:
                fields["vocab_size"] = vocab_size
            fields.setdefault("pad_token_id", pad_token_id)
            self.bert = BertModel(BertConfig(**fields), add_pooling_layer=False)
            if embed_init_std is not None:
                table = self.bert.embeddings.word_embeddings
                with torch.no_grad():
                    table.weight.normal_(0.0, float(embed_init_std))
                    if table.padding_idx is not None:
                        table.weight[table.padding_idx].zero_()
        self.out_dim: int = int(self.bert.config.hidden_size)
        self.frozen = freeze
        self.dedupe = dedupe
        if freeze:
            self.bert.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> EncoderOutput:
        tokens = self._encode_distinct(input_ids, attention_mask)  # [B,L,D]
        mask = attention_mask.bool()  # [B,L]
        if self.pool == "max":
            pooled = masked_max(tokens, mask)  # [B,D]
        elif self.pool == "cls":
            pooled = tokens[:, 0]  # [B,D]
        else:
            pooled = masked_mean(tokens, mask, dim=1)  # [B,D]
        return EncoderOutput(tokens, mask, pooled)

    def _encode_distinct(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """BERT's last hidden states ``[B,L,D]``, computed once per distinct (ids, mask) row and gathered back.

        Templated benchmarks repeat questions inside a batch (Sort-of-CLEVR: at most 36 distinct among 256;
        easy-VQA: a few dozen): the rows are independent, so encoding each distinct row once gives the same
        states and, through the gather, the same gradients (summed over the repeats). Skipped while a dropout
        is active in training (repeats would share one dropout mask) and when nothing repeats. Opt-in
        (``dedupe``, ``model.text.dedupe``): exact in real arithmetic, but the float rounding differs, and
        easy-VQA's training is chaotic enough that seed 0 then ends at 95.0% instead of 99.9% (10 epochs),
        so switching it on changes a given seed's numbers."""
        cfg = self.bert.config
        dropout = self.training and (cfg.hidden_dropout_prob > 0 or cfg.attention_probs_dropout_prob > 0)
        if not self.dedupe or dropout:  # checked first: the default path never pays for the unique below
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)  # [B, 2L]
        distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)  # [U, 2L], [B]
        if distinct.shape[0] == rows.shape[0]:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        length = input_ids.shape[1]
        states = self.bert(input_ids=distinct[:, :length],
                           attention_mask=distinct[:, length:].to(attention_mask.dtype)).last_hidden_state  # [U,L,D]
        return states.index_select(0, inverse)  # [B, L, D]

