"""BERT text encoder (HF ``transformers``): pretrained (hub name or local directory) or random init."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import BertConfig, BertModel

from mmfuse.encoders.base import EncoderOutput
from mmfuse.layers import masked_mean


class TextEncoder(nn.Module):
    """A ``BertModel`` whose token states become an :class:`EncoderOutput`.

    Args:
        pretrained: hub name or local directory of a BERT-family checkpoint; None builds a
            randomly initialised model from ``config``.
        config: ``BertConfig`` fields for random init (ignored when ``pretrained`` is set).
        vocab_size: tokenizer vocabulary size (random init only; a pretrained model has its own).
        pad_token_id: id of the padding token.
        freeze: stop gradients into the encoder.

    Shapes:
        ``forward(input_ids [B,L], attention_mask [B,L])`` → tokens ``[B,L,D]``, mask ``[B,L]``
        bool, pooled ``[B,D]`` (masked mean of the token states: unlike BERT's CLS pooler it
        needs no pre-training to be meaningful).
    """

    def __init__(
        self,
        pretrained: str | None = None,
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        self.is_pretrained = pretrained is not None
        if pretrained is not None:
            self.bert = BertModel.from_pretrained(pretrained, add_pooling_layer=False)
        else:
            fields = dict(config or {})
            if vocab_size is not None:
                fields["vocab_size"] = vocab_size
            fields.setdefault("pad_token_id", pad_token_id)
            self.bert = BertModel(BertConfig(**fields), add_pooling_layer=False)
        self.out_dim: int = int(self.bert.config.hidden_size)
        self.frozen = freeze
        if freeze:
            self.bert.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> EncoderOutput:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B,L,D]
        mask = attention_mask.bool()  # [B,L]
        pooled = masked_mean(tokens, mask, dim=1)  # [B,D]
        return EncoderOutput(tokens, mask, pooled)
