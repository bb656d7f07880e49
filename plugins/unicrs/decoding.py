"""Running a causal LM under a deep prompt: the prefix goes in as the key/value cache (a `DynamicCache`
pre-filled with one key/value pair per layer), the attention mask covers prompt + tokens, and positions start
after the prompt, as the decoder would number them had it produced the prefix itself: after the row's own
(unmasked) prompt positions, so a context's states never depend on how many entities or tokens the other
contexts of its batch have (`Prompt.positions == "real"`). `"padded"` numbers from the batch's padded prompt
length, as crs-bench did up to stop 23: a context's scores then changed with its batch.

The cache argument is ``past_key_values`` in transformers up to 5.2x and ``cache`` from 5.24 on (the old
name warns there, and is to be removed in 5.40); `cache_argument` picks what the installed decoder accepts.

Greedy decoding (UniCRS: greedy, 50 new tokens, no repeated 3-gram) is batched: every step runs one decoder
call for the whole batch on the growing cache, and the n-gram ban is a tensor operation over the batch.
The ban covers the generated tokens (a response never repeats one of its own n-grams); Hugging Face's
`no_repeat_ngram_size` also counts the prompt text, which matters little for 50-token responses.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import torch

from .prompt import Prompt


def prefix_cache(prompt: Prompt | None) -> Any:
    from transformers import DynamicCache

    if prompt is None or prompt.length == 0:
        return DynamicCache()
    return DynamicCache(ddp_cache_data=prompt.layers)


@lru_cache(maxsize=None)
def _cache_name(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_argument(decoder: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` under the name the decoder's base model takes."""
    return {_cache_name(type(decoder.base_model)): cache}


def returned_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _inputs(ids: torch.Tensor, mask: torch.Tensor, prompt: Prompt | None) -> tuple[torch.Tensor, torch.Tensor]:
    steps = torch.arange(ids.shape[1], device=ids.device)[None]
    if prompt is None or prompt.length == 0:
        return mask.long(), steps.expand(ids.shape[0], -1)
    attention = torch.cat([prompt.mask, mask], dim=1)
    if prompt.positions == "padded":
        return attention.long(), (prompt.length + steps).expand(ids.shape[0], -1)
    return attention.long(), prompt.mask.long().sum(1, keepdim=True) + steps


def hidden_states(decoder: Any, ids: torch.Tensor, mask: torch.Tensor, prompt: Prompt | None) -> torch.Tensor:
    """[B, T, d] final hidden states (after the final norm) of right-padded `ids` under `prompt`."""
    attention, positions = _inputs(ids, mask, prompt)
    out = decoder.base_model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
                             **cache_argument(decoder, prefix_cache(prompt)))
    return out.last_hidden_state


def last_positions(mask: torch.Tensor) -> torch.Tensor:
    """[B] index of each row's last real token (right padding)."""
    return mask.long().sum(1).clamp(min=1) - 1


def ban_repeated_ngrams(logits: torch.Tensor, generated: torch.Tensor, n: int) -> torch.Tensor:
    """-inf for every token that would complete an n-gram already in `generated` [B, t]."""
    if n < 1 or generated.shape[1] < n:
        return logits
    windows = generated.unfold(1, n, 1)  # [B, t - n + 1, n]
    last = generated[:, generated.shape[1] - n + 1:]  # the n - 1 newest tokens
    match = (windows[:, :, :-1] == last[:, None, :]).all(-1) if n > 1 else torch.ones_like(windows[..., 0],
                                                                                              dtype=torch.bool)
    penalty = torch.zeros_like(logits).scatter_reduce(
        1, windows[:, :, -1], torch.where(match, float("-inf"), 0.0).to(logits.dtype), reduce="amin")
    return logits + penalty


@torch.no_grad()
def greedy(decoder: Any, ids: torch.Tensor, mask: torch.Tensor, prompt: Prompt | None, max_new_tokens: int,
           eos_id: int, pad_id: int, no_repeat_ngram: int = 3) -> torch.Tensor:
    """[B, <= max_new_tokens] new token ids; a row stops at its ``eos`` (then padded with `pad_id`)."""
    attention, positions = _inputs(ids, mask, prompt)
    out = decoder.base_model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
                             **cache_argument(decoder, prefix_cache(prompt)))
    batch = ids.shape[0]
    rows = torch.arange(batch, device=ids.device)
    last = last_positions(mask)
    hidden = out.last_hidden_state[rows, last]
    cache, head = returned_cache(out), decoder.get_output_embeddings()
    next_position = positions[:, 0] + last + 1
    generated = ids.new_zeros(batch, 0)
    done = torch.zeros(batch, dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = ban_repeated_ngrams(head(hidden).float(), generated, no_repeat_ngram)
        token = torch.where(done, torch.full_like(rows, pad_id), logits.argmax(-1))
        generated = torch.cat([generated, token[:, None]], dim=1)
        done |= token == eos_id
        if bool(done.all()):
            break
        attention = torch.cat([attention, attention.new_ones(batch, 1)], dim=1)
        out = decoder.base_model(input_ids=token[:, None], attention_mask=attention,
                                 position_ids=next_position[:, None], use_cache=True, **cache_argument(decoder, cache))
        cache, hidden = returned_cache(out), out.last_hidden_state[:, -1]
        next_position = next_position + 1
    return generated
