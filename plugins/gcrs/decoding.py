"""Decoding over the prefix trie of valid semantic IDs (SYSTEMS.md §11.3): the trie as tensors, the
constraint as a transformers `LogitsProcessor`, constrained beam search, and exact full-catalogue scoring.

Scores: score(i) = Σ_l log p(c_l(i) | C, <MODE=REC>, <BOI>, c_<l(i)) with full-vocabulary log-probabilities
(masking after the log-softmax, no renormalisation; ``trie_renorm`` renormalises over each prefix's valid
children instead). Pitfalls handled: a valid prefix always has children (no empty allowed set); a dead beam
(padding hypothesis) gets -inf everywhere and is dropped with every duplicate and non-catalogue sequence.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch

from plugins.generators.lm import generation_cache_name, left_pad

from .sequences import Vocabulary

NEG = float("-inf")
CACHE = generation_cache_name()  # what forward and generate call the KV cache in this transformers version


class PrefixTrie:
    """Valid SID prefixes per level. ``child[l]`` [n_{l-1}, K]: index of the level-l prefix that extends
    prefix p of level l-1 with code k (-1: none; level -1 is the root, one row). ``prefix_of[l]`` [I]: each
    item's level-l prefix; ``leaf_item`` [n_{L-1}]: the item of each full ID."""

    def __init__(self, codes: np.ndarray, vocab: Vocabulary, device: Any = "cpu"):
        codes_t = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        items, levels = codes_t.shape
        if torch.unique(codes_t, dim=0).shape[0] != items:
            raise ValueError("gcrs: semantic IDs are not unique; a trie needs one ID per item")
        self.vocab, self.levels, self.size = vocab, levels, vocab.size
        self.codes = codes_t.to(device)
        self.child: list[torch.Tensor] = []
        self.prefix_of: list[torch.Tensor] = []
        parent_of_item = torch.zeros(items, dtype=torch.long)
        rows = 1
        for level in range(levels):
            _, inverse = torch.unique(codes_t[:, :level + 1], dim=0, return_inverse=True)
            count = int(inverse.max()) + 1
            table = torch.full((rows, self.size), -1, dtype=torch.long)
            table[parent_of_item, codes_t[:, level]] = inverse
            self.child.append(table.to(device))
            self.prefix_of.append(inverse.to(device))
            parent_of_item, rows = inverse, count
        leaf = torch.empty(rows, dtype=torch.long)
        leaf[parent_of_item] = torch.arange(items)
        self.leaf_item = leaf.to(device)

    def counts(self) -> list[int]:
        """Distinct valid prefixes per level (the last is the catalogue size)."""
        return [int(table.max()) + 1 for table in self.child]

    def walk(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N] prefix index after the code tokens [N, j] (-1 where they leave the trie); j = 0 is the root."""
        state = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        for level in range(tokens.shape[1]):
            code = tokens[:, level] - self.vocab.level_start(level)
            ok = (state >= 0) & (code >= 0) & (code < self.size)
            nxt = self.child[level][state.clamp(min=0), code.clamp(0, self.size - 1)]
            state = torch.where(ok, nxt, torch.full_like(nxt, -1))
        return state

    def items_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N] item of each full code-token row [N, L] (-1: not a catalogue ID)."""
        state = self.walk(tokens)
        return torch.where(state >= 0, self.leaf_item[state.clamp(min=0)], torch.full_like(state, -1))

    def restrict(self, scores: torch.Tensor, level: int, state: torch.Tensor, renorm: bool) -> torch.Tensor:
        """`scores` [N, V] with everything but the valid level-`level` children of each row's prefix at -inf."""
        start = self.vocab.level_start(level)
        allowed = (self.child[level][state.clamp(min=0)] >= 0) & (state >= 0)[:, None]  # [N, K]
        block = scores[:, start:start + self.size].masked_fill(~allowed, NEG)
        if renorm:
            norm = torch.logsumexp(block, dim=1, keepdim=True)
            block = block - torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))
        out = torch.full_like(scores, NEG)
        out[:, start:start + self.size] = block
        return out


class SidTrieProcessor:
    """`LogitsProcessor`: inside an open ``<BOI>`` span only trie children are allowed, and ``<EOI>`` once the ID
    is complete; outside a span no code, mode, ``<RESP>`` or ``<EOI>`` token is (text and ``<BOI>`` are).

    ``search_from``: the first position where a span may open (the prompt's trailing ``<BOI>`` for ranking)."""

    def __init__(self, trie: PrefixTrie, search_from: int, renorm: bool = False):
        self.trie, self.search_from, self.renorm = trie, search_from, renorm

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        trie, vocab = self.trie, self.trie.vocab
        tail = input_ids[:, self.search_from:]
        width = tail.shape[1]
        if width == 0:  # nothing generated yet: no span is open
            tail = input_ids[:, :0].new_zeros(input_ids.shape[0], 1)
            width = 1
        where = torch.arange(width, device=tail.device)
        last_boi = torch.where(tail == vocab.boi, where, torch.full_like(tail, -1)).max(1).values
        last_eoi = torch.where(tail == vocab.eoi, where, torch.full_like(tail, -1)).max(1).values
        open_span = (last_boi >= 0) & (last_boi > last_eoi)
        depth = torch.where(open_span, width - 1 - last_boi, torch.zeros_like(last_boi))
        out = scores.clone()
        new = slice(vocab.first, vocab.first + vocab.count)
        closed = ~open_span
        if closed.any():
            banned = out[closed, new].clone().fill_(NEG)
            banned[:, vocab.boi - vocab.first] = out[closed, vocab.boi]
            out[closed, new] = banned
        for level in range(trie.levels + 1):
            rows = open_span & (depth == level)
            if not rows.any():
                continue
            index = rows.nonzero().squeeze(1)
            codes = torch.stack([tail[index, last_boi[index] + 1 + j] for j in range(level)], 1) if level else \
                tail.new_zeros(index.shape[0], 0)
            state = trie.walk(codes)
            if level < trie.levels:
                out[index] = trie.restrict(scores[index], level, state, self.renorm)
            else:
                eoi = torch.full_like(scores[index], NEG)
                eoi[:, vocab.eoi] = torch.where(state >= 0, scores[index, vocab.eoi],
                                                torch.full_like(state, NEG, dtype=scores.dtype))
                out[index] = eoi
        return out


# ----------------------------------------------------------------------------------------- prefill


def fork_cache(cache: Any) -> Any:
    """A cache object sharing `cache`'s tensors: layers append by concatenation, so growing the fork leaves
    the original as it was (no tensor is copied)."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    return new


def select_cache(cache: Any, index: torch.Tensor) -> Any:
    """A new cache holding rows `index` of `cache` (which is left untouched)."""
    new = fork_cache(cache)
    new.batch_select_indices(index)
    return new


def prefill(model: Any, prompts: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any, Any]:
    """One forward of the left-padded prompts: (ids, mask, last-position logits [B, V], KV cache)."""
    ids, mask, positions = left_pad(prompts, pad_id)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    return ids, mask, out.logits[:, -1].float(), getattr(out, CACHE)


def mode_logprobs(logits: torch.Tensor, vocab: Vocabulary) -> torch.Tensor:
    """[B, 2] log p(<MODE=REC>), log p(<MODE=CHAT>) renormalised over the two mode tokens."""
    pair = logits[:, [vocab.rec, vocab.chat]]
    return pair - torch.logsumexp(pair, dim=1, keepdim=True)


# -------------------------------------------------------------------------------------------- beam


def beam_search(model: Any, trie: PrefixTrie, ids: torch.Tensor, mask: torch.Tensor, cache: Any, width: int,
                renorm: bool, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, width] items, [B, width] scores) of constrained beam search from prompts ``... Assistant:`` already
    in `cache` (one prefill, shared by the beams); the search feeds ``<MODE=REC><BOI>`` then L constrained code
    steps. Padding hypotheses and sequences outside the catalogue come back as item -1 with score -inf."""
    from transformers import GenerationConfig, LogitsProcessorList

    vocab, rows, wanted = trie.vocab, ids.shape[0], width
    width = max(2, width)  # transformers decodes greedily (no sequence scores) with one beam: search with two
    forced = torch.tensor([vocab.rec, vocab.boi], device=ids.device).expand(rows, 2)
    full = torch.cat([ids, forced], 1)
    full_mask = torch.cat([mask, mask.new_ones(rows, 2)], 1)
    cache = select_cache(cache, torch.arange(rows, device=ids.device).repeat_interleave(width))
    config = GenerationConfig(num_beams=width, num_return_sequences=width, max_new_tokens=trie.levels, do_sample=False,
                              length_penalty=0.0, early_stopping=True, output_scores=True,
                              return_dict_in_generate=True, pad_token_id=pad_id, eos_token_id=None, use_cache=True)
    processor = SidTrieProcessor(trie, full.shape[1] - 1, renorm)
    out = model.generate(input_ids=full, attention_mask=full_mask, generation_config=config,
                         logits_processor=LogitsProcessorList([processor]), **{CACHE: cache})
    found = trie.items_of(out.sequences[:, full.shape[1]:]).view(rows, width)
    values = out.sequences_scores.float().view(rows, width)
    valid = (found >= 0) & (values > -1e8)
    found = torch.where(valid, found, torch.full_like(found, -1))[:, :wanted]  # returned best first
    return found, torch.where(valid, values, torch.full_like(values, NEG))[:, :wanted]


def beam_scores(model: Any, trie: PrefixTrie, ids: torch.Tensor, mask: torch.Tensor, cache: Any, width: int,
                renorm: bool, pad_id: int, num_items: int) -> torch.Tensor:
    """[B, I] beam scores, -inf outside each context's beam; a duplicate hypothesis keeps its best score."""
    found, values = beam_search(model, trie, ids, mask, cache, width, renorm, pad_id)
    scores = torch.full((ids.shape[0], num_items), NEG, device=ids.device)
    return scores.scatter_reduce(1, found.clamp(min=0), values, reduce="amax", include_self=True)


# ------------------------------------------------------------------------------------------- exact


def exact_scores(model: Any, trie: PrefixTrie, ids: torch.Tensor, mask: torch.Tensor, cache: Any,
                 renorm: bool, max_rows: int) -> torch.Tensor:
    """[B, I] exact SID log-probabilities of every catalogue item: after the prompt, ``<MODE=REC><BOI>`` is fed
    once per context; then one single-token forward per valid prefix of levels 0..L-2, over copies of the
    context's KV cache, in groups of level-0 subtrees of at most `max_rows` rows per forward."""
    vocab, levels, size = trie.vocab, trie.levels, trie.size
    device, rows = ids.device, ids.shape[0]
    positions = mask.sum(1, keepdim=True)  # next position of each context
    forced = torch.tensor([vocab.rec, vocab.boi], device=device).expand(rows, 2)
    mask = torch.cat([mask, mask.new_ones(rows, 2)], 1)
    out = model(input_ids=forced, attention_mask=mask, position_ids=positions + torch.arange(2, device=device),
                use_cache=True, **{CACHE: fork_cache(cache)})
    cache, first = getattr(out, CACHE), torch.log_softmax(out.logits[:, -1].float(), -1)
    counts = trie.counts()
    # parent (level l-1 prefix) of each level-l prefix, and its last code
    parents, last_codes = [], []
    for level in range(levels):
        table = trie.child[level]
        parent, code = (table >= 0).nonzero(as_tuple=True)
        order = table[parent, code].argsort()
        parents.append(parent[order])
        last_codes.append(code[order])
    out_scores = torch.empty(rows, trie.codes.shape[0], device=device)
    for row in range(rows):
        tables = [_restricted(first[row:row + 1, vocab.level_start(0):vocab.level_start(0) + size],
                              trie.child[0], renorm)]  # [1, K]
        tables += [torch.full((counts[level - 1], size), NEG, device=device) for level in range(1, levels)]
        context = select_cache(cache, torch.tensor([row], device=device))
        for group in _groups(parents, counts, max_rows):
            _score_group(model, trie, context, mask[row:row + 1], positions[row] + 2, group, parents, last_codes,
                         tables, renorm)
        total = torch.zeros(trie.codes.shape[0], device=device)
        for level in range(levels):
            parent_rows = torch.zeros_like(trie.codes[:, 0]) if level == 0 else trie.prefix_of[level - 1]
            total = total + tables[level][parent_rows, trie.codes[:, level]]
        out_scores[row] = total
    return out_scores


def _restricted(logprobs: torch.Tensor, children: torch.Tensor, renorm: bool) -> torch.Tensor:
    """Log-probabilities of each prefix's level block, renormalised over its valid children when asked."""
    if not renorm:
        return logprobs
    masked = logprobs.masked_fill(children < 0, NEG)
    return masked - torch.logsumexp(masked, dim=1, keepdim=True)


def _groups(parents: list[torch.Tensor], counts: list[int], max_rows: int) -> list[torch.Tensor]:
    """Level-0 prefixes in groups whose widest level (among levels 0..L-2) stays within `max_rows` rows."""
    levels = len(counts)
    if levels < 2:
        return []
    sizes = torch.zeros(counts[0], dtype=torch.long)
    widest = torch.ones(counts[0], dtype=torch.long)
    owner = torch.arange(counts[0])
    for level in range(1, levels - 1):
        owner = owner[parents[level].cpu()]
        sizes = torch.bincount(owner, minlength=counts[0])
        widest = torch.maximum(widest, sizes)
    groups, current, width = [], [], 0
    for prefix, rows in enumerate(widest.tolist()):
        if current and width + rows > max_rows:
            groups.append(torch.tensor(current))
            current, width = [], 0
        current.append(prefix)
        width += rows
    if current:
        groups.append(torch.tensor(current))
    return groups


def _score_group(model: Any, trie: PrefixTrie, context: Any, mask: torch.Tensor, position: torch.Tensor,
                 group: torch.Tensor, parents: list[torch.Tensor], last_codes: list[torch.Tensor],
                 tables: list[torch.Tensor], renorm: bool) -> None:
    """Fill ``tables[l + 1]`` rows of the group's level-l prefixes, l = 0..L-2, level by level."""
    vocab, size, device = trie.vocab, trie.size, mask.device
    members = group.to(device)  # level-l prefix indices of the group
    cache = select_cache(context, torch.zeros(members.shape[0], dtype=torch.long, device=device))
    local = torch.full((trie.counts()[0],), -1, dtype=torch.long, device=device)
    for level in range(trie.levels - 1):
        if level:
            keep = local[parents[level]] >= 0  # level-l prefixes whose parent row is in this group
            members_new = keep.nonzero().squeeze(1)
            cache = select_cache(cache, local[parents[level][members_new]])
            members = members_new
        tokens = (vocab.level_start(level) + last_codes[level][members]).unsqueeze(1)
        n = members.shape[0]
        row_mask = torch.cat([mask.expand(n, -1), mask.new_ones(n, level + 1)], 1)
        out = model(input_ids=tokens, attention_mask=row_mask, position_ids=(position + level).expand(n, 1),
                    use_cache=True, **{CACHE: cache})
        cache = getattr(out, CACHE)
        start = vocab.level_start(level + 1)
        logprobs = torch.log_softmax(out.logits[:, -1].float(), -1)[:, start:start + size]
        tables[level + 1][members] = _restricted(logprobs, trie.child[level + 1][members], renorm)
        local = torch.full((trie.counts()[level],), -1, dtype=torch.long, device=device)
        local[members] = torch.arange(n, device=device)
