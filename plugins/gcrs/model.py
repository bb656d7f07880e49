"""`gcrs` (SYSTEMS.md §11): one causal LM that writes the response mode, then the target item's semantic ID
under the trie constraint, then the response. It recommends (`scores`: constrained beam search or exact
full-catalogue SID log-probabilities, oracle mode <MODE=REC>) and speaks (`generate`: free mode, the
recommended item's span, greedy text with SID spans rendered as titles).

Training, test-time evaluation (free mode, mode accuracy, perplexity) and checkpoints live in
`plugins.gcrs.training` and `plugins.gcrs.evaluation`, the plugin's own train and predict stages.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from harness.api import ConvSample, RecSample, RunContext, Split, item_name
from plugins.generators.lm import ResponseNoRepeatNGram, left_pad, length_batches, target_logits
from plugins.unicrs.model import torch_threads
from plugins.unicrs.presets import signature

from . import presets
from .backbone import load as load_backbone
from .decoding import CACHE, PrefixTrie, SidTrieProcessor, beam_scores, exact_scores, mode_logprobs, prefill
from .semantic_ids import load_or_build
from .sequences import Serializer

TINY_TEXT_DIALOGUES = 300


def _tiny_texts(ctx: RunContext) -> list[str]:
    turns = [turn.text for dialogue in ctx.train.dialogues[:TINY_TEXT_DIALOGUES] for turn in dialogue.turns]
    return turns + list(ctx.dataset.catalogue.titles) + ["User: Assistant:"]


class GCRS(nn.Module):
    """GCRS with a `preset` (``paper``, ``cpu``, ``test-tiny``) and per-setting overrides (`presets.SETTINGS`)."""

    trainable = True
    gcrs = True  # trained and evaluated by this plugin's own stages

    def __init__(self, ctx: RunContext, preset: str = "cpu", **overrides: Any):
        super().__init__()
        self.preset = preset
        self.settings = s = presets.resolve(preset, overrides)
        loss = ((ctx.config or {}).get("loss") or {}).get("name", "ce")
        if loss != "ce":
            raise ValueError(f"gcrs trains with next-token CE on its own sequences (no catalogue logits); loss "
                             f"'{loss}' would be ignored: use --loss ce")
        self.device = ctx.device
        self.titles = tuple(ctx.dataset.catalogue.titles)
        self.num_items = len(self.titles)
        with torch_threads(s["threads"]):
            self.codes, self.id_stats = load_or_build(ctx.dataset, s, Path(ctx.cache_dir), ctx.device)
        net = load_backbone(s, Path(ctx.cache_dir), _tiny_texts(ctx) if s["backbone"] == "tiny" else (),
                            ctx.device, ctx.seed)
        self.lm, self.tokenizer, self.vocab = net.model, net.tokenizer, net.vocab
        self.source, self.tied, self.test_only = net.source, net.tied, net.test_only
        self.layers_total = net.layers_total
        self.beam_width = s["beam_width"]  # the predict stage narrows it on valid (`aux_beam_width`)
        self.serializer = Serializer(self.tokenizer, self.vocab, self.codes, s["max_input_tokens"],
                                     s["max_response_tokens"])
        self.trie = PrefixTrie(self.codes, self.vocab, ctx.device)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.training_log: dict[str, Any] = {}  # filled by the train stage
        self.evaluation: dict[str, Any] = {}  # filled by the predict stage on test
        self.modes: list[torch.Tensor] = []  # [B, 2] mode log-probabilities of each scored batch, in order

    # ------------------------------------------------------------------------------------------ state

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """LoRA weights and the new vocabulary rows: everything else reloads from the backbone's source."""
        return {name: p.detach().clone() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        own = dict(self.named_parameters())
        wrong = [k for k in state if k not in own] + [k for k, p in own.items() if p.requires_grad and k not in state]
        if wrong:
            raise RuntimeError(f"gcrs checkpoint does not match the model: {wrong[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value.to(own[name].device))

    def to(self, *args: Any, **kwargs: Any) -> "GCRS":
        super().to(*args, **kwargs)
        device = next(self.lm.parameters()).device
        self.device = str(device)
        self.trie = PrefixTrie(self.codes, self.vocab, device)
        return self

    @contextmanager
    def merged(self) -> Iterator[None]:
        """Eval with LoRA and the new-row deltas merged into the weights: otherwise peft rebuilds the full
        [V, d] embedding and head (index_copy of the 49k-row table) in every forward, ~0.2 s each on CPU."""
        was_training = self.training
        self.eval()
        self.lm.merge_adapter()
        try:
            with torch.no_grad(), torch_threads(self.settings["threads"]):
                yield
        finally:
            self.lm.unmerge_adapter()
            self.train(was_training)

    # ------------------------------------------------------------------------------------------ batches

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        return {"prompts": [self.serializer.prompt(split.context(s)) for s in samples]}

    def lm_loss(self, prompts: Sequence[list[int]], targets: Sequence[list[int]]) -> torch.Tensor:
        """Mean next-token CE over the target (assistant-side) tokens only."""
        logits, labels = target_logits(self.lm, prompts, targets, self.pad_id, self.device)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                           ignore_index=-100)

    def training_loss(self, batch: dict[str, Any], labels: torch.Tensor, loss: Any) -> torch.Tensor:
        """LM loss of ``<MODE=REC> span(label) <RESP>`` after each context (the recommendation part of a target;
        the train stage adds the response text)."""
        targets = [self.serializer.target(None, int(label)) for label in labels.tolist()]
        return self.lm_loss(batch["prompts"], targets)

    # ------------------------------------------------------------------------------------------ ranking

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.scores(batch)

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        """[B, I] SID scores under <MODE=REC> (oracle mode); the free-mode decision of each context is kept in
        `modes`. Beam: -inf outside the beam; exact: every item."""
        s = self.settings
        parts = []
        with self.merged():
            for start in range(0, len(batch["prompts"]), s["score_batch_size"]):
                prompts = batch["prompts"][start:start + s["score_batch_size"]]
                ids, mask, logits, cache = prefill(self.lm, prompts, self.pad_id, self.device)
                self.modes.append(mode_logprobs(logits, self.vocab).cpu())
                if s["ranking"] == "exact":
                    parts.append(exact_scores(self.lm, self.trie, ids, mask, cache, s["trie_renorm"], s["exact_rows"]))
                else:
                    parts.append(beam_scores(self.lm, self.trie, ids, mask, cache, self.beam_width, s["trie_renorm"],
                                             self.pad_id, self.num_items))
        return torch.cat(parts)

    # --------------------------------------------------------------------------------------- speaking

    def fit(self, train: Split, valid: Split) -> dict[str, Any]:
        """No-op: the one model was trained by the train stage (its summary is returned)."""
        return {"trained": bool(self.training_log.get("steps")), "by": "the train stage (one model for both tasks)"}

    def render(self, tokens: Sequence[int]) -> str:
        """Generated tokens as text: each complete SID span becomes its item's name, broken spans vanish."""
        vocab, levels = self.vocab, self.trie.levels
        out, text, i = [], [], 0
        while i < len(tokens):
            token = tokens[i]
            if token == vocab.boi:
                span = list(tokens[i + 1:i + 1 + levels])
                if len(span) == levels:
                    item = int(self.trie.items_of(torch.tensor([span], device=self.trie.codes.device))[0])
                    if item >= 0:
                        out += [self.tokenizer.decode(text, skip_special_tokens=True), item_name(self.titles[item])]
                        text = []
                i += 1 + levels + 1
                continue
            if token == self.tokenizer.eos_token_id:
                break
            if not vocab.first <= token < vocab.first + vocab.count:
                text.append(token)
            i += 1
        out.append(self.tokenizer.decode(text, skip_special_tokens=True))
        line = "".join(out).strip().splitlines()
        return " ".join(line[0].split()) if line else ""

    def generate(self, split: Split, samples: Sequence[ConvSample], recommendations: Any) -> list[str]:
        """Free mode: the model picks <MODE=REC> or <MODE=CHAT>; a REC head carries the span of the recommended
        top item (the model's own beam top-1 when it is the run's recommender); then greedy text under the SID
        constraint, no repeated n-grams, and spans rendered as titles."""
        from transformers import GenerationConfig, LogitsProcessorList

        s, vocab = self.settings, self.vocab
        prompts = [self.serializer.prompt(split.context(sample)) for sample in samples]
        responses = [""] * len(samples)
        config = GenerationConfig(max_new_tokens=s["max_new_tokens"], do_sample=False, num_beams=1,
                                  pad_token_id=self.pad_id, eos_token_id=int(self.tokenizer.eos_token_id),
                                  use_cache=True)
        with self.merged():
            for batch in length_batches([len(p) for p in prompts], s["generate_batch_size"]):
                ids, mask, logits, cache = prefill(self.lm, [prompts[i] for i in batch], self.pad_id, self.device)
                rec = (mode_logprobs(logits, vocab)[:, 0] >= np.log(0.5)).tolist()
                heads = [[vocab.rec, *self.serializer.span(int(recommendations[position][0])), vocab.resp]
                         if rec[row] and recommendations is not None else [vocab.chat, vocab.resp]
                         for row, position in enumerate(batch)]
                # heads left-padded to one width after the prompts: the prompts' cache is reused as it is
                head_ids, head_mask, _ = left_pad(heads, self.pad_id)
                ids = torch.cat([ids, head_ids.to(self.device)], 1)
                mask = torch.cat([mask, head_mask.to(self.device)], 1)
                processors = [SidTrieProcessor(self.trie, ids.shape[1])]
                if s["no_repeat_ngram"]:
                    processors.append(ResponseNoRepeatNGram(ids.shape[1], s["no_repeat_ngram"]))
                out = self.lm.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                       logits_processor=LogitsProcessorList(processors), **{CACHE: cache})
                for position, row in zip(batch, out[:, ids.shape[1]:].tolist()):
                    responses[int(position)] = self.render(row)
        return responses

    # ------------------------------------------------------------------------------------------ record

    def describe(self) -> dict[str, Any]:
        s = self.settings
        params = list(self.lm.parameters())
        return {
            "preset": self.preset, "test_only": self.test_only, "settings": dict(s),
            "language_model": {"source": self.source, "tied_embeddings": self.tied, "layers_total": self.layers_total,
                         "layers_used": s["decoder_layers"] or self.layers_total,
                         "parameters": int(sum(p.numel() for p in params)),
                         "trainable_parameters": int(sum(p.numel() for p in params if p.requires_grad)),
                         "new_rows": "peft LoraConfig.trainable_token_indices (only the new tokens' rows train)"},
            "vocabulary": {"new_tokens": self.vocab.count, "first_id": self.vocab.first,
                           "code_tokens": f"{s['levels']} levels x {s['codebook_size']}",
                           "special": ["<BOI>", "<EOI>", "<RESP>", "<MODE=REC>", "<MODE=CHAT>"]},
            "semantic_ids": self.id_stats, "trie_prefixes_per_level": self.trie.counts(),
            "ranking": {"method": s["ranking"], "beam_width": s["beam_width"] if s["ranking"] == "beam" else None,
                        "score": "sum of full-vocabulary SID log-probabilities" if not s["trie_renorm"] else
                        "sum of log-probabilities renormalised over valid trie children",
                        "oracle_mode": "<MODE=REC> forced (every recommendation sample's response recommends)"},
            "training": self.training_log, "evaluation": self.evaluation,
            "deviations": [
                "backbone SmolLM2-135M-Instruct with LoRA instead of Qwen2.5-7B with QLoRA"
                if not self.test_only else "random tiny backbone (test-only)",
                "item text: title plus catalogue metadata or KG neighbour names (no IMDb descriptions)",
                *([f"backbone cut to its first {s['decoder_layers']} of {self.layers_total} layers"]
                  if s["decoder_layers"] and s["decoder_layers"] < self.layers_total else []),
                *([f"valid lists and the conversation contexts' lists ranked with beam width {s['aux_beam_width']} "
                   "(valid is reported only, selection is on valid LM loss; a response uses the top item only)"]
                  if s["ranking"] == "beam" and s["aux_beam_width"] else []),
                *(["beam lists hold at most beam_width items; the rest of a top-50 list is -inf, ordered by id"]
                  if s["ranking"] == "beam" and s["beam_width"] < 50 else []),
            ],
        }


# ctx and preset, then one keyword per setting: the harness checks `model.params` names and types against it
GCRS.__signature__ = signature(list(inspect.signature(GCRS.__init__).parameters.values())[1:3], presets.SETTINGS)
