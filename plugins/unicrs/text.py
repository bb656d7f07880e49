"""Input formats (SYSTEMS.md §7) and batched tokenization.

Decoder text: ``User: ...<eos>System: ...<eos>...``, the last `max_context_tokens` tokens. UniCRS assigns
roles by list parity; the harness knows each turn's role, so the role is taken from the turn (identical when
turns alternate, as in the shipped INSPIRED files). A conversation input ends with the cue ``System:``; the
response (movie mentions masked as ``<movie>``, the reference form) and ``<eos>`` follow and carry the loss.

Encoder text: the same turns joined by the encoder's separator token, its last `max_encoder_tokens` tokens.

Batches are right-padded; positions of prompt-conditioned inputs start after the prompt (`Positions`).
Tokenization is one batched tokenizer call per batch; the per-row list work here builds padded arrays, as
`plugins.models.blocks.pad` does, and never touches model tensors.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.data import RECOMMENDER, Turn

CUE = "System:"


def role(turn: Turn) -> str:
    return "System" if turn.role == RECOMMENDER else "User"


def decoder_text(turns: Sequence[Turn], eos: str) -> str:
    return "".join(f"{role(turn)}: {turn.text}{eos}" for turn in turns)


def encoder_text(turns: Sequence[Turn], separator: str) -> str:
    return separator.join(f"{role(turn)}: {turn.text}" for turn in turns)


def encoder_separator(tokenizer: Any) -> str:
    return f" {tokenizer.sep_token} " if getattr(tokenizer, "sep_token", None) else "\n"


def token_lists(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added (one batched call)."""
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, T] ids, [B, T] bool mask) right-padded; every row keeps at least one position."""
    width = max(1, max((len(r) for r in rows), default=1))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = True
    return ids.to(device), mask.to(device)


def context_ids(tokenizer: Any, contexts: Sequence[str], max_tokens: int, cue: bool) -> list[list[int]]:
    """The last `max_tokens` tokens of each context (with the ``System:`` cue appended when `cue`)."""
    texts = [f"{text}{CUE}" if cue else text for text in contexts]
    return [ids[-max_tokens:] if ids else [tokenizer.eos_token_id] for ids in token_lists(tokenizer, texts)]


def lm_batch(tokenizer: Any, contexts: Sequence[str], responses: Sequence[str], max_context: int,
             max_response: int, device: Any) -> dict[str, torch.Tensor]:
    """Context + response ids and the next-token targets of the response (``-100`` elsewhere)."""
    heads = context_ids(tokenizer, contexts, max_context, cue=True)
    tails = [ids[:max_response - 1] + [tokenizer.eos_token_id]
             for ids in token_lists(tokenizer, [f" {text}" for text in responses])]
    rows = [head + tail for head, tail in zip(heads, tails)]
    ids, mask = right_pad(rows, tokenizer.pad_token_id, device)
    targets = torch.full_like(ids, -100)
    for i, (head, tail) in enumerate(zip(heads, tails)):  # position j predicts token j + 1
        targets[i, len(head) - 1:len(head) - 1 + len(tail)] = torch.tensor(tail, dtype=torch.long)
    return {"dec_ids": ids, "dec_mask": mask, "targets": targets}


def context_batch(tokenizer: Any, contexts: Sequence[str], max_context: int, device: Any,
                  cue: bool = False) -> dict[str, torch.Tensor]:
    ids, mask = right_pad(context_ids(tokenizer, contexts, max_context, cue), tokenizer.pad_token_id, device)
    return {"dec_ids": ids, "dec_mask": mask}


def encoder_batch(tokenizer: Any, texts: Sequence[str], max_tokens: int, device: Any) -> dict[str, torch.Tensor]:
    """Encoder inputs for a trainable encoder (the frozen one is read from `TokenStates`)."""
    tokens = tokenizer(list(texts), truncation=True, max_length=max_tokens, padding=True, return_tensors="pt")
    return {"enc_ids": tokens["input_ids"].to(device), "enc_mask": tokens["attention_mask"].bool().to(device)}
