"""The LumiCRS augmenter family: `random`, `template`, `swap` and `pda` (SYSTEMS.md §10.5).

Every augmenter reads only the training dialogues it is handed (the runner never passes valid or test),
returns *new* dialogues marked ``synthetic=True`` with ``meta`` naming the augmenter, target and tier, and
reports generated / filtered / accepted counts per tier. The number of dialogues added is capped at
``ratio`` × #training dialogues (the paper's ρ = 0.3), uniformly subsampled with the run's generator.
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness.api import RunContext
from harness.data import RECOMMENDER, SEEKER, DataError, Dialogue, Turn
from harness.popularity import ItemStatistics, TierThresholds

from . import parsing
from .exemplars import CompositeWeights, ExemplarSet, dialogue_text, embed_texts, segment, select_exemplars

TIERS = ("head", "body", "tail")  # head appears only for `random` copies and file records tagged head


def _tier_stats() -> dict[str, dict[str, int]]:
    return {tier: {"generated": 0, "filtered": 0, "accepted": 0} for tier in TIERS}


class _Base:
    """Shared budget (ratio cap), statistics and the run's tier statistics."""

    name = "base"

    def __init__(self, ctx: RunContext, ratio: float | None = 0.3, per_tail: int = 8, per_body: int = 4):
        if ratio is not None and ratio < 0:
            raise ValueError(f"augmenter '{self.name}': ratio must be >= 0 or null, got {ratio}")
        if per_tail < 0 or per_body < 0:
            raise ValueError(f"augmenter '{self.name}': per_tail and per_body must be >= 0")
        self.ctx, self.ratio, self.per_tier = ctx, ratio, {"tail": per_tail, "body": per_body}
        self.dataset = ctx.dataset
        tiers = ctx.config.get("tiers") if isinstance(ctx.config, dict) else None
        self.stats = ItemStatistics(ctx.stats.popularity, ctx.stats.label_counts,
                                    TierThresholds(**tiers) if tiers else ctx.stats.thresholds)
        self.counts = _tier_stats()
        self.reasons: dict[str, int] = {}
        self.extra: dict[str, Any] = {}
        self.subsampled_out = 0

    def _filtered(self, tier: str, reason: str) -> None:
        self.counts[tier]["filtered"] += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def _cap(self, dialogues: list[Dialogue], n_train: int, rng: random.Random) -> list[Dialogue]:
        """At most ratio × n_train dialogues, a uniform subsample; accepted counts per tier follow."""
        if self.ratio is not None:
            limit = int(math.floor(self.ratio * n_train + 1e-9))
            if len(dialogues) > limit:
                keep = sorted(rng.sample(range(len(dialogues)), limit))
                self.subsampled_out = len(dialogues) - limit
                dialogues = [dialogues[i] for i in keep]
        for dialogue in dialogues:
            tier = dialogue.meta.get("tier")
            if tier in self.counts:
                self.counts[tier]["accepted"] += 1
        return dialogues

    def statistics(self) -> dict[str, Any]:
        totals = {key: sum(self.counts[t][key] for t in TIERS) for key in ("generated", "filtered", "accepted")}
        return {**totals, "per_tier": self.counts, "filter_reasons": dict(sorted(self.reasons.items())),
                "not_kept_by_ratio_cap": self.subsampled_out, "ratio": self.ratio,
                "per_movie": {"tail": self.per_tier["tail"], "body": self.per_tier["body"]}, **self.extra}


# ------------------------------------------------------------------------------------------------- random


class RandomAugmenter(_Base):
    """Copies of training dialogues drawn uniformly with replacement: the no-information control."""

    name = "random"

    def __init__(self, ctx: RunContext, ratio: float = 0.3):
        super().__init__(ctx, ratio)

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        count = int(math.floor(self.ratio * len(train) + 1e-9))
        picks = [rng.randrange(len(train)) for _ in range(count)] if train else []
        tiers = self.stats.tiers
        out = []
        for k, index in enumerate(picks):
            source = train[index]
            items = {item for turn in source.turns for item in turn.items}
            tier = "tail" if any(tiers[i] == "tail" for i in items) else "body" \
                if any(tiers[i] == "body" for i in items) else "head"
            out.append(Dialogue(f"random-{k}-{source.id}", list(source.turns), synthetic=True,
                                meta={"augmenter": "random", "source": source.id, "tier": tier}))
        for dialogue in out:
            self.counts[dialogue.meta["tier"]]["generated"] += 1
            self.counts[dialogue.meta["tier"]]["accepted"] += 1
        self.extra["tier_rule"] = "a copy's tier is the rarest tier among the movies it mentions"
        return out


# ----------------------------------------------------------------------------------------------- template

OPENERS = ("Hi! Can you recommend a movie for tonight?", "Hello, I'm looking for something good to watch.",
           "Hey, any movie suggestions?", "Hi there, I need a movie recommendation.")
FEATURE_OPENERS = ("Hi! I'd like to watch a movie with {feature}.", "Hello, I'm in the mood for something with {feature}.",
                   "Hey, do you know a good movie with {feature}?")
ASKS = ("Sure! What kind of movies do you like?", "Of course. Any favourite genres or actors?",
        "Happy to help. What did you enjoy recently?")
PREFERENCES = ("I like anything entertaining, surprise me.", "Something I haven't seen before, please.",
               "I enjoy a good story with interesting characters.")
FEATURE_PREFERENCES = ("I really like movies with {feature}.", "Anything with {feature} would be great.")
SUGGESTIONS = ("You should watch {title}.", "I would recommend {title}.",
               "How about {title}? I think you will enjoy it.", "Have you seen {title}? It's great.")
CLOSERS = ("Thanks, I will check it out!", "Sounds great, thank you.", "Nice, I'll watch it this weekend.")


class TemplateAugmenter(_Base):
    """Static hand-written dialogues recommending each body/tail movie; a KG neighbour's name (genre,
    person) fills the seeker's preference when the movie has one."""

    name = "template"

    def __init__(self, ctx: RunContext, ratio: float | None = 0.3, per_tail: int = 8, per_body: int = 4,
                 include_cold: bool = False):
        super().__init__(ctx, ratio, per_tail, per_body)
        self.include_cold = include_cold
        self.extra["include_cold"] = include_cold

    def _features(self) -> list[list[int]]:
        kg = self.dataset.kg
        if kg is None or not kg.entity_names:
            return [[] for _ in range(self.dataset.num_items)]
        items = set(kg.item_entities)
        neighbours = kg.neighbours()
        return [sorted(e for e in neighbours[entity] if e not in items and kg.entity_names[e])
                for entity in kg.item_entities]

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        kg, titles = self.dataset.kg, self.dataset.catalogue.titles
        features = self._features()
        tiers = np.asarray(self.stats.tiers)
        targets = segment(self.stats)
        if self.include_cold:
            cold = np.flatnonzero((tiers == "tail") & (np.asarray(self.stats.popularity) == 0))
            targets = {**targets, "tail": np.union1d(targets["tail"], cold)}
        out = []
        for tier in ("body", "tail"):
            for item in targets[tier].tolist():
                for k in range(self.per_tier[tier]):
                    out.append(self._dialogue(item, tier, k, titles, features[item], kg, rng))
                    self.counts[tier]["generated"] += 1
        return self._cap(out, len(train), rng)

    def _dialogue(self, item: int, tier: str, k: int, titles: Sequence[str], features: list[int], kg: Any,
                  rng: random.Random) -> Dialogue:
        title = parsing.surface(titles[item])
        feature = rng.choice(features) if features and rng.random() < 0.7 else None
        entity_of = (lambda e: (e,)) if kg is not None else (lambda e: ())
        name = kg.entity_names[feature] if feature is not None else ""

        def turn(role: str, template: str, movie: bool = False, with_feature: bool = False) -> Turn:
            text = template.format(title=title, feature=name)
            masked = template.format(title="<movie>", feature=name)
            entities = (entity_of(feature) if with_feature else ()) + \
                ((kg.item_entities[item],) if movie and kg is not None else ())
            return Turn(role, text, (item,) if movie else (), entities, masked)

        use = feature is not None
        turns = [turn(SEEKER, rng.choice(FEATURE_OPENERS if use and rng.random() < 0.5 else OPENERS),
                      with_feature=use),
                 turn(RECOMMENDER, rng.choice(ASKS)),
                 turn(SEEKER, rng.choice(FEATURE_PREFERENCES if use else PREFERENCES), with_feature=use),
                 turn(RECOMMENDER, rng.choice(SUGGESTIONS), movie=True),
                 turn(SEEKER, rng.choice(CLOSERS))]
        if "{feature}" not in turns[0].text and use:  # the opener had no slot: only the preference names it
            turns[0] = Turn(SEEKER, turns[0].text, (), (), turns[0].masked_text)
        return Dialogue(f"template-{item}-{k}", turns, synthetic=True,
                        meta={"augmenter": "template", "target": item, "tier": tier})


# ------------------------------------------------------------------------------------------- exemplar use


class _ExemplarBased(_Base):
    """Builds the exemplar dialogues and support sets of the training dialogues (MiniLM + VADER, SYSTEMS.md
    §10.2-10.3; the paper's "prototype dialogues", not the model's learned class prototypes)."""

    def __init__(self, ctx: RunContext, ratio: float | None, per_tail: int, per_body: int, encoder: str,
                 support_size: int, exemplar_rule: str, weights: Sequence[float], alpha_int: float,
                 normalize_mov: bool):
        super().__init__(ctx, ratio, per_tail, per_body)
        if len(weights) != 4:
            raise ValueError(f"augmenter '{self.name}': weights are (w_sem, w_emo, w_mov, w_int), got {weights}")
        self.encoder, self.support_size, self.rule = encoder, support_size, exemplar_rule
        self.weights = CompositeWeights(*[float(w) for w in weights], alpha_int=float(alpha_int),
                                        normalize_mov=bool(normalize_mov))
        self.exemplars: ExemplarSet | None = None
        self.embeddings: np.ndarray | None = None

    def _build(self, train: Sequence[Dialogue]) -> ExemplarSet:
        from .emotion import dialogue_emotions

        started = time.perf_counter()
        self.embeddings = embed_texts([dialogue_text(d) for d in train], self.encoder, self.ctx.cache_dir,
                                      self.ctx.device)
        emotions = dialogue_emotions(train)
        self.exemplars = select_exemplars(train, self.stats, self.embeddings, emotions, self.weights,
                                          self.support_size, self.rule)
        self.extra["exemplars"] = {**self.exemplars.summary(), "encoder": self.encoder, "emotion": "vader",
                                   "seconds": round(time.perf_counter() - started, 2)}
        return self.exemplars


class SwapAugmenter(_ExemplarBased):
    """Copies of a body/tail movie's support dialogues in which the recommended movie closest to the target
    in the KG (most shared neighbours: genres, people, ...) is replaced by the target, in items, entities
    and text. Dialogues that already mention the target, or have no KG-close movie, are skipped."""

    name = "swap"

    def __init__(self, ctx: RunContext, ratio: float | None = 0.3, per_tail: int = 8, per_body: int = 4,
                 encoder: str = "all-MiniLM-L6-v2", support_size: int = 10, exemplar_rule: str = "centroid",
                 weights: Sequence[float] = (0.4, 0.2, 0.2, 0.2), alpha_int: float = 1.0,
                 normalize_mov: bool = False, min_shared: int = 1):
        super().__init__(ctx, ratio, per_tail, per_body, encoder, support_size, exemplar_rule, weights, alpha_int,
                         normalize_mov)
        if ctx.dataset.kg is None:
            raise ValueError(f"augmenter 'swap' needs a knowledge graph; '{ctx.dataset.name}' has none")
        self.min_shared = min_shared

    def _shared(self) -> Any:
        """Sparse [num_items, num_items] count of shared KG neighbours (direct adjacency counts too)."""
        from scipy import sparse

        kg = self.dataset.kg
        neighbours = kg.neighbours()
        rows, cols = [], []
        for item, entity in enumerate(kg.item_entities):
            linked = neighbours[entity] | {entity}
            rows.extend([item] * len(linked))
            cols.extend(linked)
        incidence = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                      shape=(len(kg.item_entities), kg.num_entities))
        return (incidence @ incidence.T).tocsr()

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        exemplars = self._build(train)
        shared = self._shared()
        titles = self.dataset.catalogue.titles
        out = []
        for item, tier in zip(exemplars.items.tolist(), exemplars.tiers):
            wanted, made = self.per_tier[tier], 0
            row = shared.getrow(item).toarray().ravel()
            for d in exemplars.support_of(item):
                if made >= wanted:
                    break
                self.counts[tier]["generated"] += 1
                swapped = self._swap(train[d], item, row, titles)
                if isinstance(swapped, str):
                    self._filtered(tier, swapped)
                    continue
                made += 1
                out.append(Dialogue(f"swap-{item}-{train[d].id}", swapped, synthetic=True,
                                    meta={"augmenter": "swap", "target": item, "tier": tier, "source": train[d].id}))
        return self._cap(out, len(train), rng)

    def _swap(self, dialogue: Dialogue, target: int, shared: np.ndarray, titles: Sequence[str]) -> list[Turn] | str:
        mentioned = {i for turn in dialogue.turns for i in turn.items}
        if target in mentioned:
            return "already_mentions_target"
        candidates = sorted({i for t, turn in enumerate(dialogue.turns) if turn.role == RECOMMENDER and t >= 1
                             for i in turn.items})
        if not candidates:
            return "no_recommended_movie"
        scores = shared[candidates]
        best = int(np.argmax(scores))  # first maximum: the lowest item index
        if scores[best] < self.min_shared:
            return "no_kg_close_movie"
        old = candidates[best]
        kg = self.dataset.kg
        turns = []
        for turn in dialogue.turns:
            if old not in turn.items:
                turns.append(turn)
                continue
            text = _replace_title(turn, old, target, titles)
            if text is None:
                return "title_not_in_text"
            items = tuple(target if i == old else i for i in turn.items)
            entities = tuple(kg.item_entities[target] if e == kg.item_entities[old] else e for e in turn.entities)
            turns.append(Turn(turn.role, text, items, entities, turn.masked_text))
        return turns


def _replace_title(turn: Turn, old: int, new: int, titles: Sequence[str]) -> str | None:
    """The turn text with `old`'s title (as stored or as people write it) replaced by `new`'s; else rebuilt
    from the masked text when its `<movie>` slots align with the turn's items; None when neither works."""
    import re

    for form in (titles[old], parsing.surface(titles[old])):
        pattern = re.compile(r"(?<![\w])" + re.escape(form) + r"(?![\w])", re.IGNORECASE)
        if pattern.search(turn.text):
            return pattern.sub(lambda _: parsing.surface(titles[new]), turn.text)
    slots = turn.masked_text.split("<movie>")
    if len(slots) - 1 == len(turn.items):
        names = [parsing.surface(titles[new if i == old else i]) for i in turn.items]
        return "".join(part + (names[k] if k < len(names) else "") for k, part in enumerate(slots))
    return None


# --------------------------------------------------------------------------------------------------- PDA

SYSTEM_PROMPT = "You write short, natural movie recommendation dialogues between a Seeker and a Recommender."
JUDGE_PROMPT = ("Here is a movie recommendation dialogue:\n\n{dialogue}\n\nIs it fluent, consistent, and is "
                "recommending \"{title}\" plausible? Answer with one word: PASS or FAIL.")
RULE_JUDGES = ("rule:turns-per-role", "rule:no-empty-turns", "rule:lexical-diversity", "rule:length",
               "rule:on-topic")
REVIEW_POLICIES = ("reject", "accept")


def passes_similarity(similarity: float, maximum: float = 0.85) -> bool:
    """The near-copy filter keeps a candidate whose cosine to its exemplar dialogue is at most `maximum`."""
    return similarity <= maximum


def vote_bucket(passes: int, accept: int = 4, review: int = 2) -> str:
    """Judge voting: >= `accept` passes accept, >= `review` go to review, fewer reject (paper: 4-5/2-3/0-1)."""
    return "accept" if passes >= accept else "review" if passes >= review else "reject"


class PDAAugmenter(_ExemplarBased):
    """PDA, the paper's "prototype-driven augmentation", driven here by exemplar dialogues: prompts from each
    body/tail movie's exemplar and support set, an LLM (or a JSONL of dialogues accepted elsewhere), mandatory
    rule checks, the > `similarity_max` cosine near-copy filter (to the exemplar), and judge voting (accept
    >= `accept_votes` passes, review >= `review_votes`, reject below; the review band follows `review_policy`
    since there is no human reviewer)."""

    name = "pda"

    def __init__(self, ctx: RunContext, ratio: float | None = 0.3, per_tail: int = 8, per_body: int = 4,
                 backend: str = "hf", backend_params: dict[str, Any] | None = None, max_items: int | None = 20,
                 max_calls: int | None = None, max_new_tokens: int = 200, temperature: float = 0.7,
                 generation_seed: int = 0, prompt_turns: int = 8, prompt_words: int = 40, support_in_prompt: int = 2,
                 similarity_max: float = 0.85, judges: Sequence[str] = RULE_JUDGES, accept_votes: int = 4,
                 review_votes: int = 2, review_policy: str = "reject", on_topic_min: float = 0.3,
                 augmentation_file: str | None = None, encoder: str = "all-MiniLM-L6-v2", support_size: int = 3,
                 exemplar_rule: str = "centroid", weights: Sequence[float] = (0.4, 0.2, 0.2, 0.2),
                 alpha_int: float = 1.0, normalize_mov: bool = False):
        super().__init__(ctx, ratio, per_tail, per_body, encoder, support_size, exemplar_rule, weights, alpha_int,
                         normalize_mov)
        if review_policy not in REVIEW_POLICIES:
            raise ValueError(f"augmenter 'pda': review_policy must be one of {REVIEW_POLICIES}, got {review_policy!r}")
        if not 0 <= review_votes <= accept_votes <= len(judges) and augmentation_file is None:
            raise ValueError(f"augmenter 'pda': need 0 <= review_votes <= accept_votes <= {len(judges)} judges")
        unknown = [j for j in judges if j not in RULE_JUDGES and not j.startswith("llm:")]
        if unknown:
            raise ValueError(f"augmenter 'pda': unknown judge {unknown[0]!r} (rule judges: {', '.join(RULE_JUDGES)}; "
                             f"LLM judges: 'llm:<backend>')")
        self.backend_name, self.backend_params = backend, dict(backend_params or {})
        self.max_items, self.max_calls, self.max_new_tokens = max_items, max_calls, max_new_tokens
        self.temperature, self.generation_seed = float(temperature), generation_seed
        self.prompt_turns, self.prompt_words, self.support_in_prompt = prompt_turns, prompt_words, support_in_prompt
        self.similarity_max, self.judges = float(similarity_max), list(judges)
        self.accept_votes, self.review_votes, self.review_policy = accept_votes, review_votes, review_policy
        self.on_topic_min, self.augmentation_file = on_topic_min, augmentation_file
        self.titles = parsing.TitleIndex(ctx.dataset.catalogue)
        # the LLM backends registered by plugins, handed over by the run context
        if ctx.registries is None:
            raise ValueError("augmenter 'pda' needs ctx.registries (the run's registered LLM backends)")
        self.registries = ctx.registries
        if augmentation_file is None:  # unknown backend names fail here, before any exemplar is selected
            for name in {backend, *(j.split(":", 1)[1] for j in judges if j.startswith("llm:"))}:
                self.registries.llm_backends.get(name)
        self.generator: Any = None
        self.judge_generators: dict[str, Any] = {}

    # -- generation ---------------------------------------------------------------------------------

    def _render(self, dialogue: Dialogue) -> str:
        lines = []
        for turn in dialogue.turns[: self.prompt_turns]:
            words = turn.text.split()
            text = " ".join(words[: self.prompt_words]) + (" ..." if len(words) > self.prompt_words else "")
            lines.append(f"{'Seeker' if turn.role == SEEKER else 'Recommender'}: {text}")
        return "\n".join(lines)

    def prompt(self, train: Sequence[Dialogue], item: int) -> list[dict[str, str]]:
        """Exemplar + support dialogues + the instruction to recommend the target (SYSTEMS.md §10.5 step 1)."""
        assert self.exemplars is not None
        title = parsing.surface(self.dataset.catalogue.titles[item])
        examples = [self.exemplars.exemplar_of(item)] + self.exemplars.support_of(item)[: self.support_in_prompt]
        shown = "\n\n".join(f"Example {k + 1}:\n{self._render(train[d])}" for k, d in enumerate(examples))
        instruction = (f"{shown}\n\nWrite one new dialogue like the examples, 6 to 10 lines, alternating "
                       f"'Seeker:' and 'Recommender:' lines. The Recommender must recommend the movie \"{title}\" "
                       f"by name. Output only the dialogue.")
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": instruction}]

    def _targets(self) -> list[tuple[int, str]]:
        assert self.exemplars is not None
        pairs = list(zip(self.exemplars.items.tolist(), self.exemplars.tiers))
        random.Random(self.generation_seed).shuffle(pairs)  # not the run seed: every seed shares generations
        return pairs if self.max_items is None else pairs[: self.max_items]

    def _generator(self, name: str, params: dict[str, Any], max_calls: int | None) -> Any:
        from plugins.llm.backends import CachedGenerator, build_backend

        backend = build_backend(self.registries, name, cache_dir=self.ctx.cache_dir, **params)
        return CachedGenerator(backend, self.ctx.cache_dir, max_calls)

    def augment(self, train: Sequence[Dialogue], rng: random.Random) -> list[Dialogue]:
        started = time.perf_counter()
        if self.augmentation_file is not None:
            accepted = self._from_file(Path(self.augmentation_file))
            self.extra.update({"source": "file", "augmentation_file": str(self.augmentation_file)})
            out = self._cap(accepted, len(train), rng)
            self.extra["seconds"] = round(time.perf_counter() - started, 2)
            return out
        exemplars = self._build(train)
        self.generator = self._generator(self.backend_name, self.backend_params, self.max_calls)
        candidates: list[tuple[int, str, int, parsing.Parsed]] = []
        budget_hit = False
        targets = self._targets()
        for item, tier in targets:
            messages = self.prompt(train, item)
            for k in range(self.per_tier[tier]):
                seed = parsing.stable_seed(self.generation_seed, item, k)
                try:
                    text = self.generator.generate(messages, temperature=self.temperature,
                                                   max_tokens=self.max_new_tokens, seed=seed)
                except Exception as error:
                    from plugins.llm.backends import BudgetExhausted

                    if not isinstance(error, BudgetExhausted):
                        raise
                    budget_hit = True
                    break
                self.counts[tier]["generated"] += 1
                expected = [item] + [i for d in [exemplars.exemplar_of(item)] + exemplars.support_of(item)
                                     for turn in train[d].turns for i in turn.items]
                parsed = parsing.to_turns(parsing.split_roles(text), self.titles, self.dataset.kg, expected)
                failure = parsing.first_failure(parsing.mandatory_checks(parsed, item))
                if failure:
                    self._filtered(tier, f"rule:{failure}")
                    continue
                candidates.append((item, tier, k, parsed))
            if budget_hit:
                break
        accepted = self._filter_and_judge(candidates)
        self.extra.update({
            "source": "llm", "backend": self.generator.backend.identity(), "backend_name": self.backend_name,
            "llm_calls": self.generator.calls, "cache_hits": self.generator.hits, "budget_exhausted": budget_hit,
            "budget": {"max_items": self.max_items, "items_used": len(targets), "max_calls": self.max_calls,
                       "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                       "generation_seed": self.generation_seed},
            "judges": self.judges, "votes": {"accept": f">= {self.accept_votes}",
                                             "review": f"{self.review_votes}..{self.accept_votes - 1}",
                                             "reject": f"< {self.review_votes}"},
            "review_policy": f"no human reviewer: review band is {self.review_policy}ed",
            "similarity_filter": f"discard cosine to exemplar > {self.similarity_max} ({self.encoder})",
            "judge_llm_calls": sum(g.calls for g in self.judge_generators.values()),
            "label": "PDA-proxy" if self.backend_name == "hf" else "PDA",
        })
        out = self._cap(accepted, len(train), rng)
        self.extra["seconds"] = round(time.perf_counter() - started, 2)
        return out

    # -- filtering ----------------------------------------------------------------------------------

    def _filter_and_judge(self, candidates: list) -> list[Dialogue]:
        if not candidates:
            return []
        assert self.exemplars is not None and self.embeddings is not None
        texts = ["\n".join(f"{t.role}: {t.text}" for t in parsed.turns) for _, _, _, parsed in candidates]
        vectors = embed_texts(texts, self.encoder, self.ctx.cache_dir, self.ctx.device)
        exemplar_rows = np.asarray([self.exemplars.exemplar_of(item) for item, _, _, _ in candidates])
        similarity = np.sum(vectors * self.embeddings[exemplar_rows], axis=1)
        accepted = []
        buckets = {"accept": 0, "review": 0, "reject": 0}
        for (item, tier, k, parsed), sim, text in zip(candidates, similarity.tolist(), texts):
            if not passes_similarity(sim, self.similarity_max):
                self._filtered(tier, "similarity")
                continue
            votes = {judge: self._judge(judge, parsed, text, item, sim) for judge in self.judges}
            passes = sum(votes.values())
            bucket = vote_bucket(passes, self.accept_votes, self.review_votes)
            buckets[bucket] += 1
            if bucket == "reject" or (bucket == "review" and self.review_policy == "reject"):
                self._filtered(tier, f"judges:{bucket}")
                continue
            accepted.append(parsing.make_dialogue(f"pda-{item}-{k}", parsed, {
                "augmenter": "pda", "target": item, "tier": tier, "votes": passes, "bucket": bucket,
                "similarity": round(float(sim), 4)}))
        self.extra["judge_buckets"] = buckets
        return accepted

    def _judge(self, judge: str, parsed: parsing.Parsed, text: str, item: int, similarity: float) -> bool:
        raw = parsed.raw
        if judge == "rule:turns-per-role":
            return all(sum(role == r for role, _ in raw) >= 2 for r in (SEEKER, RECOMMENDER))
        if judge == "rule:no-empty-turns":
            return all(parsing.tokens(t) for _, t in raw)
        if judge == "rule:lexical-diversity":
            words = [w for _, t in raw for w in parsing.tokens(t)]
            return bool(words) and len(set(words)) / len(words) >= 0.4
        if judge == "rule:length":
            return 20 <= sum(len(parsing.tokens(t)) for _, t in raw) <= 400
        if judge == "rule:on-topic":
            return similarity >= self.on_topic_min
        name = judge.split(":", 1)[1]
        if name not in self.judge_generators:
            self.judge_generators[name] = self._generator(name, self.backend_params if name == self.backend_name
                                                          else {}, None)
        title = parsing.surface(self.dataset.catalogue.titles[item])
        answer = self.judge_generators[name].generate(
            [{"role": "user", "content": JUDGE_PROMPT.format(dialogue=text, title=title)}],
            temperature=0.0, max_tokens=4, seed=0)
        return answer.strip().upper().startswith("PASS")

    # -- file route ---------------------------------------------------------------------------------

    def _from_file(self, path: Path) -> list[Dialogue]:
        """Accepted dialogues from JSONL: {"movie": native id, "tier"?, "text" | "turns", "provenance"?}."""
        if not path.is_file():
            raise DataError(str(path), None, None, "augmentation file does not exist")
        index = self.dataset.catalogue.index_map()
        tiers = self.stats.tiers
        out = []
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(str(path), line_number, None, f"invalid JSON: {error.msg}") from None
                if not isinstance(record, dict):
                    raise DataError(str(path), line_number, None, "expected a JSON object")
                movie = record.get("movie")
                if not isinstance(movie, int) or isinstance(movie, bool) or movie not in index:
                    raise DataError(str(path), line_number, "movie", f"{movie!r} is not a catalogue item id")
                item = index[movie]
                tier = record.get("tier", tiers[item])
                if tier not in ("head", "body", "tail"):
                    raise DataError(str(path), line_number, "tier", f"must be head, body or tail, got {tier!r}")
                raw = self._raw_turns(record, path, line_number)
                parsed = parsing.to_turns(raw, self.titles, self.dataset.kg, [item])
                failure = parsing.first_failure(parsing.mandatory_checks(parsed, item))
                if failure:
                    raise DataError(str(path), line_number, "turns" if "turns" in record else "text",
                                    f"fails the rule check '{failure}'")
                if tier in self.counts:
                    self.counts[tier]["generated"] += 1
                out.append(parsing.make_dialogue(f"pda-file-{line_number}", parsed, {
                    "augmenter": "pda", "target": item, "tier": tier, "source": f"{path.name}:{line_number}",
                    "provenance": record.get("provenance")}))
        return out

    @staticmethod
    def _raw_turns(record: dict, path: Path, line: int) -> list[tuple[str, str]]:
        if "turns" in record:
            turns = record["turns"]
            if not isinstance(turns, list) or not turns:
                raise DataError(str(path), line, "turns", "must be a non-empty list")
            raw = []
            for k, turn in enumerate(turns):
                if not isinstance(turn, dict) or turn.get("role") not in (SEEKER, RECOMMENDER) \
                        or not isinstance(turn.get("text"), str):
                    raise DataError(str(path), line, f"turns[{k}]",
                                    "needs role 'seeker' or 'recommender' and a string text")
                raw.append((turn["role"], turn["text"].strip()))
            return raw
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(str(path), line, "text", "needs a non-empty 'text' (or 'turns')")
        return parsing.split_roles(text)
