"""Generative answer head: a small transformer decoder that writes the answer word by word.

Built for RL fine-tuning as well as supervised training: :meth:`AnswerGenerator.score` gives the
per-token log-probs and hidden states (for a value head) of any answer, and
:meth:`AnswerGenerator.generate` returns exactly what ``score`` gives on the tokens it produced.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmfuse.fusion.base import FusionOutput

STRATEGIES: tuple[str, ...] = ("greedy", "sample", "beam")
# Logit of the ids that are never actions (PAD, BOS). Finite rather than -inf so an entropy term
# p * log p is 0, not NaN; logits are float32, where exp(-1e9 / T) is exactly 0 for any sane T.
BANNED_LOGIT = -1e9


class GeneratorOutput(NamedTuple):
    """Teacher-forced ``logits [B, T, V]`` (float32; ``[:, t]`` predicts ``tokens[:, t]``) and
    ``hidden [B, T, D]``, the final (post-LayerNorm) decoder state each prediction is made from."""

    logits: Tensor
    hidden: Tensor


class ScoredTokens(NamedTuple):
    """Per-token ``logprobs [B, T]`` (0 where ``mask`` is False), ``hidden [B, T, D]``, and the
    action ``mask [B, T]`` (bool: tokens up to and including the first EOS)."""

    logprobs: Tensor
    hidden: Tensor
    mask: Tensor


class Generation(NamedTuple):
    """Generated ``tokens [B, T]`` (long, PAD after each row's EOS) with their ``logprobs [B, T]``,
    action ``mask [B, T]`` and ``hidden [B, T, D]``, equal to ``score(fused, tokens, temperature)``."""

    tokens: Tensor
    logprobs: Tensor
    mask: Tensor
    hidden: Tensor


def action_mask(tokens: Tensor, eos_id: int, pad_id: int) -> Tensor:
    """``[B, T]`` bool: non-PAD positions up to and including each row's first EOS."""
    is_eos = tokens == eos_id
    after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    return ~after_eos & (tokens != pad_id)


class AnswerGenerator(nn.Module):
    """Transformer decoder that generates the answer, cross-attending to the fused memory.

    Memory: the pooled vector as one always-attended token, then ``fused.tokens`` if any (slots
    with ``fused.mask`` False ignored). Decoder: token + learned position embeddings, pre-norm
    layers (causal self-attention, cross-attention, GELU FFN), final LayerNorm, vocab projection.
    PAD and BOS are never actions: their logits are fixed to :data:`BANNED_LOGIT`.

    Args:
        dim: fused feature size (the fusion's ``dim``), also the decoder width.
        vocab_size: ``len(AnswerTokenizer)``.
        num_layers, num_heads, ffn_dim (default ``4 * dim``), dropout: decoder size.
        max_length: the longest token sequence (answer words + EOS) handled.
        pad_id, bos_id, eos_id: special ids (the :class:`~mmfuse.data.answer_tokens.AnswerTokenizer` ones).

    Shapes (B batch, T answer tokens, V vocab, D dim):
        ``forward(fused, tokens [B, T])`` -> :class:`GeneratorOutput` (``[B, T, V]``, ``[B, T, D]``);
        ``loss(fused, tokens [B, T])`` -> scalar; ``score`` -> :class:`ScoredTokens`;
        ``generate(fused)`` -> :class:`Generation` with ``T <= max_new_tokens``.
    """

    banned: Tensor  # buffer [V] bool: the ids that are never actions (PAD, BOS)

    def __init__(self, dim: int, vocab_size: int, num_layers: int = 2, num_heads: int = 4,
                 ffn_dim: int | None = None, dropout: float = 0.1, max_length: int = 8,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> None:
        super().__init__()
        specials = {"pad_id": pad_id, "bos_id": bos_id, "eos_id": eos_id}
        if any(not 0 <= i < vocab_size for i in specials.values()) or len(set(specials.values())) != 3:
            raise ValueError(f"special ids {specials} must be distinct and < vocab_size={vocab_size}")
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.dim, self.vocab_size, self.max_length = dim, vocab_size, max_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Embedding(max_length + 1, dim)  # BOS + max_length (the last is never input)
        # Memory slots carry no position; this marks the pooled slot so attention can tell it apart.
        self.pooled_marker = nn.Parameter(torch.zeros(dim))
        # The scale of fused features depends on the fusion; pre-norm layers do not normalise memory.
        self.memory_norm = nn.LayerNorm(dim)
        layer = nn.TransformerDecoderLayer(dim, num_heads, ffn_dim or 4 * dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)
        banned = torch.zeros(vocab_size, dtype=torch.bool)
        banned[[pad_id, bos_id]] = True
        self.register_buffer("banned", banned, persistent=False)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed.weight, std=0.02)

    def _memory(self, fused: FusionOutput) -> tuple[Tensor, Tensor]:
        """Memory ``[B, 1 + N, D]`` and its key-padding mask ``[B, 1 + N]`` (True = ignore)."""
        pooled = fused.pooled
        if pooled.dim() != 2 or pooled.shape[1] != self.dim:
            raise ValueError(f"fused.pooled must be [B, {self.dim}], got {tuple(pooled.shape)}")
        memory = (self.memory_norm(pooled) + self.pooled_marker).unsqueeze(1)
        ignore = torch.zeros(pooled.shape[0], 1, dtype=torch.bool, device=pooled.device)
        if fused.tokens is not None:
            toks = fused.tokens
            real = toks.new_ones(toks.shape[:2], dtype=torch.bool) if fused.mask is None else fused.mask.bool()
            # Zero padded slots before the norm: garbage there (even NaN) must not reach outputs or grads.
            toks = self.memory_norm(toks.masked_fill(~real.unsqueeze(-1), 0.0))
            memory = torch.cat([memory, toks], dim=1)
            ignore = torch.cat([ignore, ~real], dim=1)
        return memory, ignore

    def _hidden(self, memory: Tensor, ignore: Tensor, inputs: Tensor) -> Tensor:
        """Final decoder states ``[B, T, D]`` for decoder ``inputs [B, T]`` (BOS first)."""
        t = inputs.shape[1]
        x = self.token_embed(inputs) + self.pos_embed(torch.arange(t, device=inputs.device))
        causal = torch.ones(t, t, dtype=torch.bool, device=inputs.device).triu(1)
        h = self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=ignore, tgt_is_causal=True)
        return self.norm(h)

    def _logits(self, hidden: Tensor) -> Tensor:
        # float32 logits: the softmax over the vocabulary is where low precision hurts.
        return self.out(hidden).float().masked_fill(self.banned, BANNED_LOGIT)

    def _check_tokens(self, tokens: Tensor, batch: int) -> None:
        if tokens.dim() != 2 or tokens.shape[0] != batch or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be long [{batch}, T], got {tokens.dtype} {tuple(tokens.shape)}")
        if not 1 <= tokens.shape[1] <= self.max_length:
            raise ValueError(f"tokens has T={tokens.shape[1]}, need 1 <= T <= max_length={self.max_length}")
        if ((tokens < 0) | (tokens >= self.vocab_size) | (tokens == self.bos_id)).any():
            raise ValueError("tokens hold an id out of range or BOS (BOS is prepended internally)")

    def forward(self, fused: FusionOutput, tokens: Tensor) -> GeneratorOutput:
        """Teacher forcing: decoder input ``[BOS, tokens[:, :-1]]``; see :class:`GeneratorOutput`."""
        memory, ignore = self._memory(fused)
        self._check_tokens(tokens, memory.shape[0])
        inputs = torch.cat([tokens.new_full((tokens.shape[0], 1), self.bos_id), tokens[:, :-1]], dim=1)
        hidden = self._hidden(memory, ignore, inputs)
        return GeneratorOutput(self._logits(hidden), hidden)

    def loss(self, fused: FusionOutput, tokens: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Mean token cross-entropy over the non-PAD targets of ``tokens [B, T]`` (EOS included).

        Label smoothing spreads its mass over the real actions only (not PAD/BOS, whose banned
        logits would add a huge constant). No target at all gives an exact 0 with a grad path.
        """
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        logits = self(fused, tokens).logits
        valid = tokens != self.pad_id
        logp = F.log_softmax(logits[valid], dim=-1)
        nll = -logp.gather(1, tokens[valid].unsqueeze(1)).squeeze(1)
        if label_smoothing > 0:
            nll = (1 - label_smoothing) * nll - label_smoothing * logp[:, ~self.banned].mean(-1)
        return nll.sum() / valid.sum().clamp(min=1)

    def score(self, fused: FusionOutput, tokens: Tensor, temperature: float = 1.0) -> ScoredTokens:
        """Log-prob of each token of ``tokens [B, T]`` under ``log_softmax(logits / temperature)``.

        Runs in the caller's grad mode (PPO re-scores with grad). ``hidden`` at mask-False
        positions is computed but meaningless.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        out = self(fused, tokens)
        logp = F.log_softmax(out.logits / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        mask = action_mask(tokens, self.eos_id, self.pad_id)
        return ScoredTokens(logp.masked_fill(~mask, 0.0), out.hidden, mask)

    def states(self, fused: FusionOutput, tokens: Tensor) -> Tensor:
        """Decoder states ``[B, T + 1, D]`` before each token of ``tokens [B, T]`` and after the last:
        ``[:, :T]`` equals ``forward(fused, tokens).hidden``; ``[:, T]`` is the state after ``tokens[:, -1]``
        (RL bootstraps the value of a truncated answer from it)."""
        memory, ignore = self._memory(fused)
        self._check_tokens(tokens, memory.shape[0])
        return self._hidden(memory, ignore, torch.cat([tokens.new_full((tokens.shape[0], 1), self.bos_id), tokens], 1))

    def generate(self, fused: FusionOutput, strategy: str = "greedy", max_new_tokens: int | None = None,
                 temperature: float = 1.0, top_k: int = 0, num_beams: int = 4,
                 generator: torch.Generator | None = None, length_penalty: float = 0.0) -> Generation:
        """Generate answers; each row stops after its EOS (an action: included, mask True).

        ``"greedy"``; ``"sample"`` from ``softmax(logits / temperature)``, only among the ``top_k``
        most likely tokens if ``top_k > 0`` (``generator``, on the model's device, makes it
        reproducible); ``"beam"``: ``num_beams`` beams ranked by summed log-prob / ``length **
        length_penalty`` (default 0: the plain log-likelihood, so the most likely answer found; > 0
        favours longer answers); finished beams stay finished and compete; the best is returned.

        ``logprobs`` and ``hidden`` are :meth:`score` of the returned tokens at ``temperature``, in
        the caller's grad mode: top-k is a sampling choice, not part of the reported log-prob.
        Use ``eval()`` mode (in train mode dropout differs between search and scoring). ``T`` is
        the longest row; rows cut at ``max_new_tokens`` have no EOS.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {list(STRATEGIES)}")
        steps = self.max_length if max_new_tokens is None else max_new_tokens
        if not 1 <= steps <= self.max_length:
            raise ValueError(f"max_new_tokens must be in [1, max_length={self.max_length}], got {steps}")
        if not temperature > 0 or top_k < 0 or num_beams < 1:
            raise ValueError(f"need temperature > 0, top_k >= 0, num_beams >= 1; got {temperature}, "
                             f"{top_k}, {num_beams}")
        with torch.no_grad():  # the search itself; the returned tensors come from score() below
            memory, ignore = self._memory(fused)
            if strategy == "beam":
                tokens = self._beam(memory, ignore, steps, temperature, num_beams, length_penalty)
            else:
                k = top_k if strategy == "sample" else None
                tokens = self._decode(memory, ignore, steps, temperature, k, generator)
        scored = self.score(fused, tokens, temperature)
        return Generation(tokens, scored.logprobs, scored.mask, scored.hidden)

    def _next_logits(self, memory: Tensor, ignore: Tensor, prefix: Tensor) -> Tensor:
        """Logits ``[B, V]`` of the token after ``prefix [B, t]``. The whole prefix is re-run (no KV
        cache): answers are a few tokens long, and it is the very computation forward() does."""
        bos = prefix.new_full((prefix.shape[0], 1), self.bos_id)
        return self._logits(self._hidden(memory, ignore, torch.cat([bos, prefix], dim=1))[:, -1])

    def _decode(self, memory: Tensor, ignore: Tensor, steps: int, temperature: float,
                top_k: int | None, generator: torch.Generator | None) -> Tensor:
        """Greedy (``top_k`` None) or sampled tokens ``[B, T]``, PAD after each row's EOS."""
        batch = memory.shape[0]
        tokens = torch.empty(batch, 0, dtype=torch.long, device=memory.device)
        done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        for _ in range(steps):
            logits = self._next_logits(memory, ignore, tokens) / temperature
            if top_k is None:
                nxt = logits.argmax(-1)
            else:
                if 0 < top_k < self.vocab_size:
                    keep = logits.topk(top_k, dim=-1).indices
                    logits = torch.full_like(logits, float("-inf")).scatter(-1, keep, logits.gather(-1, keep))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
            nxt = nxt.masked_fill(done, self.pad_id)
            tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)
            done |= nxt == self.eos_id
            if bool(done.all()):
                break
        return tokens

    def _beam(self, memory: Tensor, ignore: Tensor, steps: int, temperature: float,
              beams: int, length_penalty: float) -> Tensor:
        """Best beam per row ``[B, T]``, PAD after its EOS (see :meth:`generate`)."""
        batch, vocab, dev = memory.shape[0], self.vocab_size, memory.device
        memory, ignore = memory.repeat_interleave(beams, 0), ignore.repeat_interleave(beams, 0)
        seqs = torch.empty(batch, beams, 0, dtype=torch.long, device=dev)
        # One live beam at the start (the rest -inf) so the K beams are not K copies of one hypothesis.
        total = torch.full((batch, beams), float("-inf"), device=dev)
        total[:, 0] = 0.0
        length = torch.zeros(batch, beams, device=dev)
        done = torch.zeros(batch, beams, dtype=torch.bool, device=dev)
        # A finished beam's only continuation is PAD at no cost: it keeps competing with its score.
        pad_only = torch.full((vocab,), float("-inf"), device=dev)
        pad_only[self.pad_id] = 0.0
        for _ in range(steps):
            logits = self._next_logits(memory, ignore, seqs.reshape(batch * beams, -1)) / temperature
            logp = F.log_softmax(logits, -1).masked_fill(self.banned, float("-inf")).view(batch, beams, vocab)
            logp = torch.where(done.unsqueeze(-1), pad_only, logp)
            cand = (total.unsqueeze(-1) + logp).view(batch, -1)
            cand_len = torch.where(done, length, length + 1).repeat_interleave(vocab, dim=1)
            top = (cand / cand_len.pow(length_penalty)).topk(beams, dim=-1).indices  # [B, K]
            parent, tok = top // vocab, top % vocab
            total, length = cand.gather(1, top), cand_len.gather(1, top)
            done = done.gather(1, parent) | (tok == self.eos_id)
            seqs = seqs.gather(1, parent.unsqueeze(-1).expand(-1, -1, seqs.shape[-1]))
            seqs = torch.cat([seqs, tok.unsqueeze(-1)], dim=-1)
            if bool((done | total.isneginf()).all()):  # dead (-inf) beams never win
                break
        best = (total / length.clamp(min=1).pow(length_penalty)).argmax(-1)
        out = seqs[torch.arange(batch, device=dev), best]
        return out[:, : int((out != self.pad_id).sum(1).max())]  # T = longest returned answer
