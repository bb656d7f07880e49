"""`llm_judge`: an LLM rates each generated response on the LumiCRS human-evaluation aspects.

Opt-in (``MetricSpec(default=False)``): a config without ``metrics:`` never runs it; name it in
``extra_metrics: [llm_judge]`` (or in ``metrics:``). The judge is any registered LLM backend, built by name
from ``metric_params.judge_backend`` and ``metric_params.judge_backend_params`` (e.g. ``{model: gpt-4o-mini,
base_url: ...}``; an ``openai`` key is read from the environment, never from the config).

Each response is rated given the last `CONTEXT_LINES` lines of its context and the recommender's top item,
with the fixed rubric `RUBRIC` (version `RUBRIC_VERSION`, docs/protocol.md): fluency, informativeness,
persuasiveness and long-tail relevance, each an integer 0-2 as in iEvaLM. Decoding is fixed (temperature 0,
seed 0, `MAX_TOKENS`). Keys: ``judge_<aspect>`` = mean over the parsed answers, ``judge_mean`` = the mean of
the four, ``n_judged`` parsed answers and ``n_judge_unparsed`` answers that did not give four valid scores
(left out of every mean, never read as 0; every value is null when nothing parsed).

Answers are cached on disk as JSON, keyed by the backend's identity and the exact messages (and decoding),
so re-judging the same responses, a second seed with the same outputs or `bench rescore` costs no call. The
backend's ``identity()`` and the rubric version are the family's `identity()`: the record keeps them in
``metric_families.llm_judge.details``, so runs rated by different judges never share a leaderboard table.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from harness.api import COUNT, HIGHER, ConvOutputs, MetricParam, MetricSpec, hookimpl

RUBRIC_VERSION = "1"
ASPECTS = ("fluency", "informativeness", "persuasiveness", "long_tail_relevance")
KEYS = {"fluency": "judge_fluency", "informativeness": "judge_informativeness",
        "persuasiveness": "judge_persuasiveness", "long_tail_relevance": "judge_longtail"}
CONTEXT_LINES = 8  # the end of the dialogue the judge reads
TEMPERATURE, SEED, MAX_TOKENS = 0.0, 0, 120

RUBRIC = """\
You are an expert evaluator of conversational movie recommender systems. You rate one system response, \
given the dialogue so far and the movie the recommender ranked first for this point of the dialogue. \
Rate four aspects, each with an integer 0, 1 or 2:
- fluency: 0 = ungrammatical, incoherent or unreadable; 1 = understandable but awkward or with clear errors; \
2 = fluent, natural and coherent with the dialogue.
- informativeness: 0 = no useful content (generic chit-chat, empty or off-topic); 1 = some relevant \
information about movies or the user's request; 2 = specific, relevant information (titles, plot, genre, \
cast, reasons) that moves the conversation forward.
- persuasiveness: 0 = no recommendation, or no reason to follow it; 1 = a weak or generic reason; \
2 = a convincing explanation tied to the user's stated preferences.
- long_tail_relevance: 0 = recommends no movie, or one that does not fit the user's preferences; \
1 = a fitting but mainstream, very popular movie; 2 = a fitting, less widely known (long-tail) movie.
Answer with only a JSON object and nothing else: \
{"fluency": n, "informativeness": n, "persuasiveness": n, "long_tail_relevance": n}"""

USER_TEMPLATE = """\
Dialogue so far:
{context}

Movie ranked first by the recommender: {recommended}

System response to rate:
{response}"""

_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_ALIASES = {re.sub(r"[^a-z]", "", aspect): aspect for aspect in ASPECTS} | {"longtail": "long_tail_relevance",
                                                                            "longtailrelevance": "long_tail_relevance"}
_LINE = re.compile(r"(fluency|informativeness|persuasiveness|long[\s_-]?tail(?:[\s_-]?relevance)?)[\"'*]*"
                   r"\s*[:=]\s*[\"'*]*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


def messages(context: str, recommended: str | None, response: str) -> list[dict[str, str]]:
    """The judge's chat messages for one response (system: the rubric; user: the case)."""
    tail = "\n".join(context.splitlines()[-CONTEXT_LINES:]) or "(the dialogue starts here)"
    user = USER_TEMPLATE.format(context=tail, recommended=recommended or "(none)", response=response or "(empty)")
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": user}]


def _score(value: Any) -> int | None:
    """An aspect score: 0, 1 or 2 as an int, an integral float or a digit string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and float(value) in (0.0, 1.0, 2.0):
        return int(value)
    return None


def _aspect(name: str) -> str | None:
    return _ALIASES.get(re.sub(r"[^a-z]", "", name.lower()))


def parse(answer: str) -> dict[str, int] | None:
    """The four scores of a judge's answer, or None when it does not give all four validly.

    Accepted: a JSON object anywhere in the text (code fences and prose around it are fine; keys match
    case- and punctuation-insensitively, "long-tail relevance" included), else ``aspect: n`` pairs. A score
    outside 0-2, a missing aspect or an aspect given two different scores makes the answer unparsed."""
    for match in _OBJECT.finditer(answer):
        try:
            data = json.loads(match.group())
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        scores: dict[str, int | None] = {}
        for key, value in data.items():
            aspect = _aspect(str(key))
            if aspect is not None:
                scores[aspect] = _score(value) if aspect not in scores or scores[aspect] == _score(value) else None
        if set(scores) == set(ASPECTS):
            return {aspect: scores[aspect] for aspect in ASPECTS} if None not in scores.values() else None  # type: ignore[misc]
    found: dict[str, set[int | None]] = {}
    for name, value in _LINE.findall(answer):
        aspect = _aspect(name)
        if aspect is not None:
            found.setdefault(aspect, set()).add(_score(value))
    if set(found) == set(ASPECTS) and all(len(v) == 1 and None not in v for v in found.values()):
        return {aspect: next(iter(found[aspect])) for aspect in ASPECTS}  # type: ignore[misc]
    return None


class LLMJudge:
    """Rates every response with an LLM backend (see the module docstring)."""

    def __init__(self, registries: Any, cache_dir: Path | None = None, judge_backend: str = "openai",
                 judge_backend_params: dict[str, Any] | None = None):
        from plugins.llm.backends import CachedGenerator, build_backend

        if registries is None:
            raise ValueError("metric family 'llm_judge' needs the registries (to build its LLM backend)")
        self.backend_name, self.backend_params = judge_backend, dict(judge_backend_params or {})
        self.backend = build_backend(registries, judge_backend, cache_dir=cache_dir, **self.backend_params)
        self.generator = CachedGenerator(self.backend, cache_dir)

    def identity(self) -> dict[str, Any]:
        return {"judge": self.backend.identity(), "rubric": RUBRIC_VERSION,
                "decoding": {"temperature": TEMPERATURE, "seed": SEED, "max_tokens": MAX_TOKENS}}

    def judge(self, context: str, recommended: str | None, response: str) -> tuple[str, dict[str, int] | None]:
        answer = self.generator.generate(messages(context, recommended, response), temperature=TEMPERATURE,
                                         max_tokens=MAX_TOKENS, seed=SEED)
        return answer, parse(answer)

    def compute_outputs(self, outputs: ConvOutputs) -> dict[str, Any]:
        sums = dict.fromkeys(ASPECTS, 0)
        judged = unparsed = 0
        for context, recommended, response in zip(outputs.contexts, outputs.recommended, outputs.responses):
            _, scores = self.judge(context, recommended, response)
            if scores is None:
                unparsed += 1
                continue
            judged += 1
            for aspect in ASPECTS:
                sums[aspect] += scores[aspect]
        values: dict[str, Any] = {KEYS[a]: (sums[a] / judged if judged else None) for a in ASPECTS}
        values["judge_mean"] = sum(sums.values()) / (len(ASPECTS) * judged) if judged else None
        values["n_judged"], values["n_judge_unparsed"] = judged, unparsed
        return values


@hookimpl
def crs_bench_register_metrics(registry) -> None:
    registry.add("llm_judge", LLMJudge,
                 "LLM-as-judge: fluency, informativeness, persuasiveness, long-tail relevance (0-2); opt-in.",
                 version="1", requires={"llm_backends"},
                 spec=MetricSpec("conv", {**{key: HIGHER for key in KEYS.values()}, "judge_mean": HIGHER,
                                          "n_judged": COUNT, "n_judge_unparsed": COUNT},
                                 columns=(*KEYS.values(), "judge_mean"), default=False,
                                 params={"judge_backend": MetricParam(str, "openai", "registered LLM backend name"),
                                         "judge_backend_params": MetricParam(
                                             dict, {}, "the backend's parameters (model, base_url, ...)")}))
