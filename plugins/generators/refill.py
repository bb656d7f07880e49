"""Continuous batching for greedy and sampled decoding: a batch slot freed by a finished response is given to a
waiting prompt at the next segment boundary, so a batch stays full instead of waiting for its longest response.

Why: responses end at very different lengths (a few tokens to `max_new_tokens`). Cutting decoding into
segments and dropping finished rows (what `LMGenerator._decode` does for one batch) stops computing the ended
rows, but the batch then shrinks, and a shrunken batch pays nearly a full step per token. Here the waiting
prompts are prefilled (one forward of their left-padded tokens but the last) and their KV cache is joined to
the running one: both are left-padded to a common width, and each row's attention mask and position ids (the
mask's running count, as `generate` derives them) keep the padding invisible, so a row decodes the tokens it
would decode alone (up to float rounding). Columns that only padding uses after rows leave are cut.

It needs a cache whose every layer holds the whole history as `[batch, heads, time, dim]` tensors
(transformers' `DynamicLayer`); `supports_refill` says whether a cache qualifies, and callers fall back to
one batch at a time otherwise (sliding-window or quantised caches).
"""
from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from plugins.generators.lm import generation_cache_name, left_pad


@dataclass
class Running:
    """The rows being decoded: left-padded tokens so far, their mask, where each row's response starts, which
    prompt each row is, how many tokens each may still add, and the KV cache of every column but the last."""

    ids: Any
    mask: Any
    starts: list[int]
    rows: list[int]
    budgets: list[int]
    cache: Any

    def __len__(self) -> int:
        return len(self.rows)


def supports_refill(cache: Any) -> bool:
    """Whether every layer of `cache` is a plain, full-history dynamic layer (so left-padding and joining along
    the batch are exact)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)


def prefill(model: Any, prompts: Sequence[list[int]], rows: list[int], budget: int, pad_id: int,
            device: Any, keeps_logits: bool = False) -> Running:
    """Rows for `prompts`: one forward over each left-padded prompt but its last token (which `generate` feeds
    next), keeping the KV cache."""
    import torch

    ids, mask, positions = left_pad(prompts, pad_id)
    if ids.shape[1] < 2:  # a one-token prompt: a masked pad column gives the forward something to cache
        ids = torch.cat([ids.new_full((ids.shape[0], 1), pad_id), ids], 1)
        mask = torch.cat([mask.new_zeros(mask.shape[0], 1), mask], 1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    output = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                   use_cache=True, **({"logits_to_keep": 1} if keeps_logits else {}))
    return Running(ids, mask, [ids.shape[1]] * len(rows), list(rows), [budget] * len(rows),
                   getattr(output, generation_cache_name()))


def _left_pad_rows(running: Running, columns: int, pad_id: int) -> Running:
    """`running` with `columns` more padding columns on the left (tokens, mask and every cache layer)."""
    import torch
    import torch.nn.functional as F

    if columns == 0:
        return running
    ids = torch.cat([running.ids.new_full((len(running), columns), pad_id), running.ids], 1)
    mask = torch.cat([running.mask.new_zeros(len(running), columns), running.mask], 1)
    for layer in running.cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
        layer.values = F.pad(layer.values, (0, 0, columns, 0))
    return Running(ids, mask, [s + columns for s in running.starts], running.rows, running.budgets, running.cache)


def join(running: Running, new: Running, pad_id: int) -> Running:
    """One batch of both: the narrower is left-padded to the wider, then rows are stacked."""
    import torch

    width = max(running.ids.shape[1], new.ids.shape[1])
    running = _left_pad_rows(running, width - running.ids.shape[1], pad_id)
    new = _left_pad_rows(new, width - new.ids.shape[1], pad_id)
    for mine, theirs in zip(running.cache.layers, new.cache.layers):
        mine.keys = torch.cat([mine.keys, theirs.keys], 0)
        mine.values = torch.cat([mine.values, theirs.values], 0)
    return Running(torch.cat([running.ids, new.ids], 0), torch.cat([running.mask, new.mask], 0),
                   running.starts + new.starts, running.rows + new.rows, running.budgets + new.budgets,
                   running.cache)


def keep_rows(running: Running, keep: list[int]) -> Running | None:
    """The rows at positions `keep`, with the leading columns that are padding in every kept row cut."""
    import torch

    if not keep:
        return None
    index = torch.tensor(keep, device=running.ids.device)
    running.cache.batch_select_indices(index)
    ids, mask = running.ids.index_select(0, index), running.mask.index_select(0, index)
    first = int((mask.sum(0) > 0).nonzero()[0])  # the first column any kept row uses
    if first:
        ids, mask = ids[:, first:], mask[:, first:]
        for layer in running.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
    return Running(ids, mask, [running.starts[i] - first for i in keep], [running.rows[i] for i in keep],
                   [running.budgets[i] for i in keep], running.cache)


def decode_with_refill(model: Any, tokenizer: Any, prompts: Sequence[list[int]], config: Any, batch_size: int,
                       segment: int, processors: Callable[[list[int]], list[Any]], pad_id: int,
                       device: Any, keeps_logits: bool = False) -> list[list[int]] | None:
    """New tokens of every prompt, decoding at most `batch_size` rows at once, `segment` tokens per `generate`
    call; prompts are taken shortest first, so joined rows pad little. `processors(starts)` builds the logits
    processors for rows whose responses start at those columns. None when the model's cache cannot be joined
    (the caller then decodes batch by batch)."""
    import torch

    eos, cache_name = int(config.eos_token_id), generation_cache_name()
    waiting = deque(sorted(range(len(prompts)), key=lambda i: len(prompts[i])))
    results: list[list[int]] = [[] for _ in prompts]
    running: Running | None = None
    while waiting or running is not None:
        free = batch_size - (len(running) if running is not None else 0)
        if waiting and free > 0:
            rows = [waiting.popleft() for _ in range(min(free, len(waiting)))]
            new = prefill(model, [prompts[i] for i in rows], rows, config.max_new_tokens, pad_id, device,
                          keeps_logits)
            if not supports_refill(new.cache):
                return None
            running = new if running is None else join(running, new, pad_id)
        part = copy.copy(config)
        part.max_new_tokens, part.return_dict_in_generate = min(segment, min(running.budgets)), True
        output = model.generate(input_ids=running.ids, attention_mask=running.mask, generation_config=part,
                                logits_processor=processors(running.starts), tokenizer=tokenizer,
                                **{cache_name: running.cache})
        new_tokens = output.sequences[:, running.ids.shape[1]:]
        steps = new_tokens.shape[1]
        texts = tokenizer.batch_decode(new_tokens)
        keep = []
        for i, (tokens, text) in enumerate(zip(new_tokens.tolist(), texts)):
            results[running.rows[i]] += tokens
            running.budgets[i] -= steps
            if eos not in tokens and "\n" not in text and running.budgets[i] > 0 and steps == part.max_new_tokens:
                keep.append(i)
        running.ids, running.cache = output.sequences, getattr(output, cache_name)
        running.mask = torch.cat([running.mask, running.mask.new_ones(len(running), steps)], 1)
        running = keep_rows(running, keep)
    return results
