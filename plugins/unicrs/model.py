"""`unicrs` (Wang et al., KDD 2022; SYSTEMS.md §7): KGPrompt deep prompts for a frozen causal LM, used for both
recommendation (hidden state at the context's last token against the entity table, the entity-tied head) and
response generation (greedy decoding under the conversation prompt).

The model holds two KGPrompt copies, as UniCRS trains them: semantic-fusion pre-training trains the
recommendation copy without its task prefix; its state (all but the prefix) then seeds the conversation copy;
the conversation and recommendation stages each train their own copy with its prefix. The three stages run in
`plugins.unicrs.stages` (the plugin's ``crs_bench_train``); this module is the network and its batches.

Extension points shared with `hybrid` (so `lumicrs` trains its class prototypes on either backbone):
``entity_vectors()``, ``represent(batch, entities)``, ``item_vectors(entities)``, ``logits(u, entities)``,
``direct_terms(logits, batch)`` (identity here).
"""
from __future__ import annotations

import inspect
import re
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from harness.api import RunContext
from harness.data import ConvSample, RecSample, Split, Turn
from plugins.models.blocks import pad, prepare_kg

from . import presets
from .backbones import decoder_geometry, load as load_backbones
from .decoding import greedy, hidden_states, last_positions
from .prompt import KGPrompt, Prompt
from .states import TokenStates, TokenStateStore, encoder_key
from .text import context_batch, decoder_text, encoder_batch, encoder_separator, encoder_text, lm_batch

PLACEHOLDER = re.compile(r"<\s*movie\s*>", re.IGNORECASE)
TINY_TEXT_DIALOGUES = 300  # training dialogues the test-tiny tokenizer is trained on


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch threads (None: unchanged), then restore the previous count."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def context_entities(turns: Sequence[Turn]) -> tuple[int, ...]:
    """Entities of `turns`, de-duplicated at first mention (the rule of `harness.data.build_samples`)."""
    return tuple(dict.fromkeys(entity for turn in turns for entity in turn.entities))


def _tiny_texts(ctx: RunContext) -> list[str]:
    turns = [turn.text for dialogue in ctx.train.dialogues[:TINY_TEXT_DIALOGUES] for turn in dialogue.turns]
    return turns + list(ctx.dataset.catalogue.titles) + ["User: System: <movie>"]


class UniCRS(nn.Module):
    """UniCRS with a `preset` (``paper``, ``cpu``, ``test-tiny``) and per-setting overrides (`presets.SETTINGS`)."""

    trainable = True
    prompt_stages = presets.STAGES  # trained by the plugin's own train stage, not the built-in loop
    use_entities = True

    def __init__(self, ctx: RunContext, preset: str = "cpu", **overrides: Any):
        super().__init__()
        self.preset = preset
        self.settings = s = presets.resolve(preset, overrides)
        kg = ctx.dataset.kg
        if kg is None:
            raise ValueError(f"unicrs needs a knowledge graph; dataset '{ctx.dataset.name}' has none")
        self.loss_name = ((ctx.config or {}).get("loss") or {}).get("name", "ce")
        if s["rec_softmax"] == "entities" and self.loss_name != "ce":
            raise ValueError(f"unicrs trains its rec head with CE over all KG entities (rec_softmax=entities); loss "
                             f"'{self.loss_name}' needs catalogue logits: set model.params.rec_softmax=items")
        self.device = ctx.device
        self.titles = tuple(ctx.dataset.catalogue.titles)
        nets = load_backbones(s, Path(ctx.cache_dir), _tiny_texts(ctx) if "tiny" in (s["text_encoder"], s["decoder"])
                              else ())
        self.encoder, self.decoder = nets.encoder, nets.decoder
        self.encoder_tokenizer, self.decoder_tokenizer = nets.encoder_tokenizer, nets.decoder_tokenizer
        self.sources = {"text_encoder": nets.encoder_source, "decoder": nets.decoder_source}
        self.decoder_layers_total, self.test_only = nets.decoder_layers_total, nets.test_only
        if not s["train_backbones"]:
            self.encoder.requires_grad_(False)
            self.decoder.requires_grad_(False)
        self.geometry = decoder_geometry(self.decoder.config)
        prepared = prepare_kg(kg, s["min_relation_edges"] or None)
        self.kept_relations = prepared.kept_relations
        self.pad_entity = kg.num_entities
        token_dim = int(self.encoder.config.hidden_size)
        self.prompts = nn.ModuleDict({
            "rec": KGPrompt(prepared, token_dim, self.geometry, s["entity_dim"], s["n_prefix_rec"], s["num_bases"],
                            s["kg_layers"]),
            "conv": KGPrompt(prepared, token_dim, self.geometry, s["entity_dim"], s["n_prefix_conv"],
                             s["num_bases"], s["kg_layers"])})
        self.register_buffer("item_entities", torch.tensor(kg.item_entities, dtype=torch.long), persistent=False)
        self.states: TokenStates | None = None
        if not s["train_backbones"]:  # frozen encoder: its states are a function of the text, cached on disk
            key = encoder_key(nets.encoder_source, s["max_encoder_tokens"])
            store = TokenStateStore(Path(ctx.cache_dir) / "unicrs-token-states" / key)
            self.states = TokenStates(self.encoder, self.encoder_tokenizer, s["max_encoder_tokens"], ctx.device,
                                      store, key)
        self.eos = self.decoder_tokenizer.eos_token
        self.separator = encoder_separator(self.encoder_tokenizer)
        self.stage_log: dict[str, Any] = {}  # stage summaries, filled by the train stage
        self._entities: dict[str, torch.Tensor] = {}  # eval-mode cache of E per prompt copy
        self._prepared_splits: set[tuple[str, int]] = set()

    # ----------------------------------------------------------------------------------- module state

    def train(self, mode: bool = True) -> "UniCRS":
        self._entities = {}
        super().train(mode)
        if not self.settings["train_backbones"]:  # frozen backbones never run dropout
            self.encoder.eval()
            self.decoder.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> "UniCRS":
        super().to(*args, **kwargs)
        device = next(self.prompts.parameters()).device
        self.device = str(device)
        if self.states is not None and self.states.flat.device != device:
            self.states.flat, self.states.device = self.states.flat.to(device), str(device)
        return self

    def frozen_prefixes(self) -> tuple[str, ...]:
        return () if self.settings["train_backbones"] else ("encoder.", "decoder.")

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: everything but the frozen pretrained backbones (reloaded from their source)."""
        frozen = self.frozen_prefixes()
        return {k: v for k, v in self.state_dict().items() if not (frozen and k.startswith(frozen))}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        frozen = self.frozen_prefixes()
        wrong = list(unexpected) + [k for k in missing if not (frozen and k.startswith(frozen))]
        if wrong:
            raise RuntimeError(f"unicrs checkpoint does not match the model: {wrong[:3]}")
        self._entities = {}

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        """The parameters a stage optimises: its prompt copy (pre-training: the rec copy), plus trainable
        backbones when they are trained."""
        copy = "conv" if stage == "conv" else "rec"
        params = list(self.prompts[copy].parameters())
        if self.settings["train_backbones"]:
            params += list(self.encoder.parameters()) + list(self.decoder.parameters())
        return params

    def after_stage(self, stage: str) -> None:
        """Pre-training seeds the conversation copy (all but its task prefix), as UniCRS loads the pre-trained
        prompt encoder into both later stages."""
        if stage == "pretrain":
            self.prompts["conv"].load_state_dict(self.prompts["rec"].shared_state(), strict=False)
            self._entities = {}

    # ------------------------------------------------------------------------------------------ batches

    def ensure_texts(self, contexts: Sequence[Sequence[Turn]]) -> None:
        """Encode (or read from the disk cache) the token states of every context at once."""
        if self.states is not None:
            with torch_threads(self.settings["threads"]):
                self.states.ensure([encoder_text(turns, self.separator) for turns in contexts])

    def batch(self, contexts: Sequence[Sequence[Turn]], entities: Sequence[Sequence[int]],
              responses: Sequence[str] | None = None, cue: bool = False) -> dict[str, Any]:
        """Encoder states (or inputs), context entities and decoder inputs of a batch of contexts; with
        `responses` also the conversation targets."""
        s, device = self.settings, self.device
        out: dict[str, Any] = {}
        encoder_texts = [encoder_text(turns, self.separator) for turns in contexts]
        if self.states is not None:
            out["states"], out["state_mask"] = self.states.gather(encoder_texts)
        else:
            out.update(encoder_batch(self.encoder_tokenizer, encoder_texts, s["max_encoder_tokens"], device))
        out["entities"], out["entity_mask"] = pad(entities, self.pad_entity, device, s["max_context_entities"])
        texts = [decoder_text(turns, self.eos) for turns in contexts]
        if responses is None:
            out.update(context_batch(self.decoder_tokenizer, texts, s["max_context_tokens"], device, cue=cue))
        else:
            out.update(lm_batch(self.decoder_tokenizer, texts, responses, s["max_context_tokens"],
                                s["max_response_tokens"], device))
        return out

    def make_batch(self, split: Split, samples: Sequence[RecSample]) -> dict[str, Any]:
        """The recommendation batch; the first time a split is seen, all its contexts are encoded at once."""
        if self.states is not None and (split.name, id(split)) not in self._prepared_splits:
            self._prepared_splits.add((split.name, id(split)))
            self.ensure_texts([split.context(s) for s in list(split.rec_samples) + list(samples)])
        entities = self.input_entities(split, [(s.dialogue_index, s.turn) for s in samples],
                                       [s.context_entities for s in samples], split.rec_samples)
        return self.batch([split.context(s) for s in samples], entities)

    def rec_inputs(self, units: Sequence[Any]) -> dict[str, Any]:
        """The recommendation stage's training batch of `stages.Unit` s (same entities as `make_batch`)."""
        split = units[0].split if units else None
        entities = self.input_entities(split, [(u.dialogue_index, u.length) for u in units],
                                       [u.entities for u in units], split.rec_samples if split else ())
        return self.batch([u.turns for u in units], entities)

    def input_entities(self, split: Split | None, contexts: Sequence[tuple[int, int]],
                       entities: Sequence[Sequence[int]], whole: Sequence[RecSample] = ()) -> list[Sequence[int]]:
        """The entity list of each recommendation input, for the contexts ``split.dialogues[d].turns[:t]``:
        the context entities here; a model that adds to them (DCRS's retrieved entities) overrides this."""
        return list(entities)

    # ------------------------------------------------------------------------------------------ network

    def text_states(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """X [B, p, d_x] and its mask: cached frozen states, or the trainable encoder run now."""
        if "states" in batch:
            return batch["states"], batch["state_mask"]
        hidden = self.encoder(input_ids=batch["enc_ids"], attention_mask=batch["enc_mask"].long()).last_hidden_state
        return hidden, batch["enc_mask"]

    def entity_vectors(self, copy: str = "rec") -> torch.Tensor:
        """H [K + 1, d_e] of a prompt copy (R-GCN + entity MLP, before W_E): what `represent`, `item_vectors`
        and `logits` take as `entities`. Computed once per step, cached in eval."""
        if not self.training and copy in self._entities:
            return self._entities[copy]
        table = self.prompts[copy].entity_states()
        if not self.training:
            self._entities[copy] = table
        return table

    def prompt(self, copy: str, batch: dict[str, Any], entities: torch.Tensor | None = None,
               use_prefix: bool = True) -> Prompt:
        states, mask = self.text_states(batch)
        table = self.entity_vectors(copy) if entities is None else entities
        prompt = self.prompts[copy](states, mask, batch["entities"], batch["entity_mask"], kind=copy,
                                    use_prefix=use_prefix, entity_table=table)
        return replace(prompt, positions=self.settings["prompt_positions"])

    def represent(self, batch: dict[str, Any], entities: torch.Tensor | None = None,
                  use_prefix: bool = True) -> torch.Tensor:
        """u [B, d]: the decoder's hidden state at each context's last token, under the rec prompt."""
        prompt = self.prompt("rec", batch, entities, use_prefix)
        hidden = hidden_states(self.decoder, batch["dec_ids"], batch["dec_mask"], prompt)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_positions(batch["dec_mask"])]

    def item_vectors(self, entities: torch.Tensor | None = None) -> torch.Tensor:
        """E of the catalogue items [I, d] (the entity-tied head's item side)."""
        entities = self.entity_vectors("rec") if entities is None else entities
        return self.prompts["rec"].project(entities[self.item_entities])

    def logits(self, u: torch.Tensor, entities: torch.Tensor | None = None) -> torch.Tensor:
        """[B, I] catalogue scores u·E_item (the entity-tied head, sliced to the catalogue)."""
        entities = self.entity_vectors("rec") if entities is None else entities
        return self.prompts["rec"].scores(u, entities[self.item_entities])

    def entity_logits(self, u: torch.Tensor, entities: torch.Tensor) -> torch.Tensor:
        """[B, K] scores over every KG entity (the padding row excluded)."""
        return self.prompts["rec"].scores(u, entities[:-1])

    def direct_terms(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return logits

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        entities = self.entity_vectors("rec")
        return self.logits(self.represent(batch, entities), entities)

    def scores(self, batch: dict[str, Any]) -> torch.Tensor:
        """[B, I] scores in chunks of `score_batch_size` contexts (eval batches can be large)."""
        size, total = self.settings["score_batch_size"], batch["dec_ids"].shape[0]
        with torch_threads(self.settings["threads"]):
            if total <= size:
                return self.forward(batch)
            return torch.cat([self.forward({k: v[i:i + size] for k, v in batch.items()})
                              for i in range(0, total, size)])

    def training_loss(self, batch: dict[str, Any], labels: torch.Tensor, loss: Any) -> torch.Tensor:
        """Recommendation stage: CE over all entities (UniCRS), or the run's loss over the catalogue."""
        entities = self.entity_vectors("rec")
        u = self.represent(batch, entities)
        if self.settings["rec_softmax"] == "entities":
            return F.cross_entropy(self.entity_logits(u, entities).float(), self.item_entities[labels])
        return loss(self.logits(u, entities).float(), labels)

    def pretrain_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """Semantic-fusion pre-training: [B, K] entity scores under the rec copy without its task prefix."""
        entities = self.entity_vectors("rec")
        return self.entity_logits(self.represent(batch, entities, use_prefix=False), entities).float()

    def conv_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """LM loss of the response tokens under the conversation prompt (the LM head sees only them)."""
        hidden = hidden_states(self.decoder, batch["dec_ids"], batch["dec_mask"], self.prompt("conv", batch))
        chosen = batch["targets"] != -100
        logits = self.decoder.get_output_embeddings()(hidden[chosen]).float()
        return F.cross_entropy(logits, batch["targets"][chosen])

    # --------------------------------------------------------------------------------------- speaking

    def fit(self, train: Split, valid: Split) -> dict[str, Any]:
        """No-op: the conversation prompt was trained by the train stage (its summary is returned)."""
        conv = self.stage_log.get("conv")
        return {"trained": bool(conv and conv.get("epochs_run")), "by": "the train stage (conversation prompt)",
                "conv_stage": conv}

    def generate(self, split: Split, samples: Sequence[ConvSample], recommendations: Any) -> list[str]:
        """Greedy responses under the conversation prompt; each ``<movie>`` the decoder writes becomes the
        name of the next recommended item (top-1 first), as UniCRS fills its generated slots."""
        from harness.conversation import item_name

        contexts = [split.context(sample) for sample in samples]
        entities = [context_entities(turns) for turns in contexts]
        self.ensure_texts(contexts)
        tokenizer, size = self.decoder_tokenizer, self.settings["generate_batch_size"]
        was_training = self.training
        self.eval()
        texts: list[str] = []
        with torch.no_grad(), torch_threads(self.settings["threads"]):
            for start in range(0, len(samples), size):
                batch = self.batch(contexts[start:start + size], entities[start:start + size], cue=True)
                tokens = greedy(self.decoder, batch["dec_ids"], batch["dec_mask"], self.prompt("conv", batch),
                                self.settings["max_new_tokens"], tokenizer.eos_token_id, tokenizer.pad_token_id,
                                self.settings["no_repeat_ngram"])
                texts += [tokenizer.decode(_until_eos(row, tokenizer.eos_token_id), skip_special_tokens=True).strip()
                          for row in tokens.tolist()]
        self.train(was_training)
        out = []
        for row, text in enumerate(texts):
            names = [] if recommendations is None else [item_name(self.titles[int(i)]) for i in recommendations[row]]
            out.append(_fill(text, names))
        return out

    # ------------------------------------------------------------------------------------------ record

    def describe(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "preset": self.preset,
            "test_only": self.test_only,
            "settings": dict(self.settings),
            "backbones": {**self.sources, "decoder_layers_used": g.layers, "decoder_layers_total":
                          self.decoder_layers_total, "frozen": not self.settings["train_backbones"]},
            "deep_prompt": {"layers": g.layers, "kv_heads": g.kv_heads, "head_dim": g.head_dim, "hidden": g.hidden,
                            "interface": "past_key_values / cache (transformers DynamicCache)"},
            "kg_relations": self.kept_relations,
            "token_states": None if self.states is None else self.states.describe(),
            "stages": self.stage_log,
            "deviations": [
                "roles from each turn's speaker instead of list parity (identical when turns alternate)",
                "frozen backbones run in eval mode (no dropout)",
                "no-repeat-3-gram ban over the generated tokens only",
                *(["stage sizes capped (max_samples)"] if any(self.settings[f"{st}_max_samples"] is not None
                                                               for st in presets.STAGES) else []),
                *([f"decoder cut to its first {g.layers} of {self.decoder_layers_total} layers"]
                  if g.layers < self.decoder_layers_total else []),
            ],
        }


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[:row.index(eos)] if eos in row else row


def _fill(text: str, names: Sequence[str]) -> str:
    """Replace the n-th ``<movie>`` by the n-th name (the last name repeats; kept when there is none)."""
    if not names:
        return text
    counter = iter(range(10 ** 6))
    return PLACEHOLDER.sub(lambda _: names[min(next(counter), len(names) - 1)], text)


# ctx and preset, then one keyword per setting: the harness checks `model.params` names and types against it
UniCRS.__signature__ = presets.signature(list(inspect.signature(UniCRS.__init__).parameters.values())[1:3])
