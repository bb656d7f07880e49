"""The conversation task of a run (stage ``conv``): rank each test response's context with the run's
recommender, let the generator (or the model that speaks) write the responses, clean them the way the
references are cleaned, and score them with the conversation metric families.

Cleaning (docs/protocol.md §4.5): references mask every movie mention as ``<movie>``; generated text
names items by title, so every catalogue item's *name* (its title without a trailing parenthesis, "Fargo
(1996 film)" -> "Fargo") found in a response becomes ``<movie>`` too, longest match first, by words and
case-insensitively. Names shorter than `MIN_NAME_CHARS` characters ("Up", "It") are masked only where
they are the context's recommended item, so common words survive.
"""
from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .api.interfaces import ConvOutputs, OutputsMetricFamily
from .api.metrics import CONV_SETTING
from .data import RECOMMENDER, ConvSample, Split, context_samples
from .errors import RunError

if TYPE_CHECKING:
    from .api.context import RunState
    from .data import Catalogue, Dataset
    from .plugin_manager import Plugins

MASK = "<movie>"
MIN_NAME_CHARS = 4
RECOMMENDATIONS_K = 10  # top-k of the recommender handed to the generator
SUBSET_KEY = "conv-subset"  # the subset of --conv-limit depends on sample ids only: the same for every run
_WORD = re.compile(r"[\w']+")
_TRAILING_PAREN = re.compile(r"\s*\([^()]*\)\s*$")


def item_name(title: str) -> str:
    """What a response says for an item: the title without a trailing "(1996 film)" / "(1999)"."""
    name = _TRAILING_PAREN.sub("", title).strip()
    return name or title.strip()


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.lower() for word in _WORD.findall(text))


class MentionMasker:
    """Masks item names in text by word n-gram lookup (one pass over the words, never over the catalogue)."""

    def __init__(self, titles: Sequence[str]):
        self.names = [item_name(title) for title in titles]
        self.known: set[tuple[str, ...]] = {_words(name) for name in self.names
                                            if len(name) >= MIN_NAME_CHARS and _words(name)}
        self.longest = max((len(words) for words in self.known), default=1)

    def mask(self, text: str, also: Sequence[str] = ()) -> str:
        """`text` with every known item name (and every name in `also`) replaced by ``<movie>``."""
        extra = {_words(name) for name in also if _words(name)}
        longest = max([self.longest, *(len(words) for words in extra)])
        spans = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
        out, position, i = [], 0, 0
        while i < len(spans):
            for n in range(min(longest, len(spans) - i), 0, -1):
                key = tuple(word for _, _, word in spans[i:i + n])
                if key in self.known or key in extra:
                    out += [text[position:spans[i][0]], MASK]
                    position, i = spans[i + n - 1][1], i + n
                    break
            else:
                i += 1
        out.append(text[position:])
        return " ".join("".join(out).split())

    def names_in(self, text: str, names: Sequence[str]) -> list[bool]:
        """Whether each of `names` occurs in `text` (as words, case-insensitively)."""
        words = " " + " ".join(_words(text)) + " "
        return [bool(_words(name)) and f" {' '.join(_words(name))} " in words for name in names]


def conv_setting(limit: int | None) -> str:
    """The metrics' setting key: ``all`` test responses, or ``subset-N`` under ``--conv-limit N`` (rows of
    different subsets never share a leaderboard table)."""
    return CONV_SETTING if limit is None else f"subset-{limit}"


def choose_subset(samples: Sequence[ConvSample], limit: int | None) -> list[ConvSample]:
    """The first `limit` samples in the order of SHA-256(sample id), kept in split order: the same
    subset for every model, seed and generator."""
    if limit is None or limit >= len(samples):
        return list(samples)
    order = sorted(range(len(samples)), key=lambda i: hashlib.sha256(f"{SUBSET_KEY}:{samples[i].uid}".encode()).digest())
    return [samples[i] for i in sorted(order[:limit])]


def render_context(split: Split, sample: ConvSample) -> str:
    """The dialogue before the response, one ``User:`` / ``System:`` line per turn."""
    return "\n".join(f"{'System' if turn.role == RECOMMENDER else 'User'}: {turn.text}"
                     for turn in split.context(sample))


def contexts_only(split: Split, samples: Sequence[ConvSample]) -> tuple[Split, list[ConvSample]]:
    """What a speaker may read: one dialogue per sample cut before the response turn, and samples without
    their reference, so no generator can see the text it is scored against."""
    from .data import Dialogue

    dialogues = [Dialogue(split.dialogues[s.dialogue_index].id, split.dialogues[s.dialogue_index].turns[:s.turn])
                 for s in samples]
    return Split(split.name, dialogues), [ConvSample(s.uid, i, s.turn, "") for i, s in enumerate(samples)]


def recommend(run: "RunState", plugins: "Plugins", split: Split, samples: Sequence[ConvSample]) -> np.ndarray | None:
    """[N, k] top-k item indices of the run's recommender for each sample's context (the predict stage on
    context-only samples, so a plugin's own ranking is used too)."""
    from .runner import call_stage

    if run.model is None or not samples:
        return None
    contexts = Split(split.name, split.dialogues, rec_samples=context_samples(split, samples))
    lists = call_stage(plugins, "crs_bench_predict", run, "predict", label="conversation (recommend)", resumable=True,
                       split=contexts, settings=("standard",))
    standard = lists["standard"]
    return standard.top[standard.sample_context][:, :RECOMMENDATIONS_K]


def outputs_from_rows(rows: Sequence[dict[str, Any]], split: Split, catalogue: "Catalogue") -> ConvOutputs:
    """The `ConvOutputs` of stored conversation rows (contexts and names from the dataset)."""
    by_uid = {sample.uid: sample for sample in split.conv_samples}
    index = {native: i for i, native in enumerate(catalogue.ids)}
    missing = [row["id"] for row in rows if row["id"] not in by_uid]
    if missing:
        raise RunError(f"conversation rows name {len(missing)} samples not in split '{split.name}', e.g. {missing[0]}")

    def name(native: int | None) -> str | None:
        return None if native is None or native not in index else item_name(catalogue.titles[index[native]])

    return ConvOutputs(
        predictions=[row["prediction"] for row in rows],
        references=[row["reference"] for row in rows],
        responses=[row.get("response", row["prediction"]) for row in rows],
        contexts=[render_context(split, by_uid[row["id"]]) for row in rows],
        recommended=[name(row.get("recommended")) for row in rows],
        gold=[[n for n in (name(g) for g in row.get("gold", [])) if n is not None] for row in rows],
    )


def score(outputs: ConvOutputs, families: dict[str, Any], *, resumable: bool = False) -> dict[str, Any]:
    """Every conversation family's values ({family: values}); families that need more than the text pairs
    implement `OutputsMetricFamily`. A family that raises is a `PluginFailure` naming it."""
    from .metric_families import computing

    values = {}
    for name, family in families.items():
        instance = family.instance
        with computing(family, "metric compute (conversation)", resumable=resumable):
            values[name] = instance.compute_outputs(outputs) if isinstance(instance, OutputsMetricFamily) else \
                instance.compute_text(outputs.predictions, outputs.references)
    return values


def stage(run: "RunState", plugins: "Plugins", dataset: "Dataset", families: dict[str, Any]) -> dict[str, Any] | None:
    """The conversation task, when a generator is attached or the model speaks: fit, rank the contexts,
    generate (the speaker sees the split, the samples and the recommendations, never the references),
    clean, score. Returns the metrics, the per-sample rows and a summary for the record."""
    import time

    from . import metric_families
    from .api.interfaces import Describable, ResponseGenerator
    from .boundary import guard, notify
    from .runner import suspects

    speaker = run.generator if run.generator is not None else \
        (run.model if isinstance(run.model, ResponseGenerator) else None)
    if speaker is None or not families:
        return None
    notify(plugins, "crs_bench_stage_start", "stage hook", resumable=True, run=run, stage="conv")
    who = suspects(run, "generator") if run.generator is not None else suspects(run, "model")
    t0 = time.perf_counter()
    test = dataset.splits["test"]
    limit = run.config.get("conv_limit")
    samples = choose_subset(test.conv_samples, limit)
    with guard("conversation (fit)", *who, resumable=True):
        fit_summary = speaker.fit(run.train_split, dataset.splits["valid"])
    recommendations = recommend(run, plugins, test, samples)
    with guard("conversation (generate)", *who, resumable=True):
        responses = speaker.generate(*contexts_only(test, samples), recommendations)
    if len(responses) != len(samples) or not all(isinstance(r, str) for r in responses):
        raise RunError(f"response generator returned {len(responses)} responses for {len(samples)} test "
                       "conversation samples (one string each expected)")
    masker = MentionMasker(dataset.catalogue.titles)
    ids = dataset.catalogue.ids
    top = [None] * len(samples) if recommendations is None else [int(row[0]) for row in recommendations]
    rows = []
    for sample, response, item in zip(samples, responses, top):
        turn = test.dialogues[sample.dialogue_index].turns[sample.turn]
        also = [] if item is None else [masker.names[item]]
        rows.append({"id": sample.uid, "task": "conv", "prediction": masker.mask(response, also),
                     "reference": sample.reference, "response": response,
                     "recommended": None if item is None else ids[item],
                     "gold": [ids[i] for i in dict.fromkeys(turn.items)]})
    outputs = outputs_from_rows(rows, test, dataset.catalogue)
    metrics = metric_families.merge_values(score(outputs, families, resumable=True), families,
                                           where="metric compute (conversation)", resumable=True)
    run.timings["conv_seconds"] = time.perf_counter() - t0
    summary = {"speaker": "generator" if run.generator is not None else "model", "samples": len(samples),
               "test_samples": len(test.conv_samples), "limit": limit,
               "subset": "all" if limit is None or limit >= len(test.conv_samples) else
               f"first {limit} by SHA-256('{SUBSET_KEY}:' + sample id)",
               "cleaning": f"catalogue item names -> {MASK} (names under {MIN_NAME_CHARS} characters only when "
                           "recommended)", "fit": fit_summary}
    if isinstance(speaker, Describable):
        with guard("conversation (describe)", *who, resumable=True):
            summary["speaker_details"] = speaker.describe()
    notify(plugins, "crs_bench_stage_finish", "stage hook", resumable=True, run=run, stage="conv", summary=summary)
    return {"metrics": metrics, "setting": conv_setting(limit if limit is not None and limit < len(test.conv_samples)
                                                         else None), "rows": rows, "summary": summary}
