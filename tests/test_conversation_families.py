"""The `rec_in_response` and `llm_judge` conversation families (issue 13): hand-computed values, the judge's
answer parsing, its disk cache and identity against a fake OpenAI-compatible server on 127.0.0.1, and its
opt-in: no config runs it unless it names it."""
from __future__ import annotations

import copy
import json
from http.server import BaseHTTPRequestHandler

import pytest

from harness.api import ConvOutputs
from harness.registry import RegistryError
from plugins.metrics import judge
from plugins.metrics.rec_in_response import RecInResponse

# --- rec_in_response -------------------------------------------------------------------------------------


def outputs(responses, recommended, gold):
    n = len(responses)
    return ConvOutputs(predictions=list(responses), references=["ref"] * n, responses=list(responses),
                       contexts=["User: hi"] * n, recommended=list(recommended), gold=[list(g) for g in gold])


HAND = outputs(
    ["You should watch Fargo tonight.", "How about Heathers?", "I like it a lot.", "Try Up, it is great.",
     "fargo is great, and so is Heat."],
    ["Fargo", "Heat", None, "Up", "Heat"],
    [["Fargo"], [], ["It"], ["Up"], ["The Matrix"]])


def test_rec_in_response_on_hand_made_outputs():
    values = RecInResponse().compute_outputs(HAND)
    # with a recommendation: #0 (names Fargo), #1 (Heathers is not Heat), #3 (short "Up", but the recommended
    # item, so it counts), #4 (Heat) -> 3 of 4; the third response has no recommendation: not in the denominator
    assert values["names_recommended"] == 3 / 4 and values["n_with_recommendation"] == 4
    # with gold: #0 yes; #2 gold "It" is under 4 characters and not recommended: never matched to "it";
    # #3 "Up" is the recommended item: yes; #4 names Heat, not The Matrix: no -> 2 of 4
    assert values["names_gold"] == 2 / 4 and values["n_with_gold"] == 4


def test_rec_in_response_without_recommender_or_gold_is_null_not_zero():
    values = RecInResponse().compute_outputs(outputs(["Watch Fargo."], [None], [[]]))
    assert values == {"names_recommended": None, "names_gold": None, "n_with_recommendation": 0, "n_with_gold": 0}


def test_rec_in_response_bootstraps_over_responses():
    from harness.significance import paired_bootstrap_outputs
    from plugins.metrics.conversation import Distinct

    silent = outputs(["No idea."] * 5, HAND.recommended, HAND.gold)

    class NoTerms:  # a family without bootstrap terms is left out, not recomputed
        def compute_outputs(self, outputs):
            raise AssertionError("never called")

    result = paired_bootstrap_outputs(HAND, silent, [RecInResponse(), Distinct(), NoTerms()], resamples=200)
    assert result["names_recommended"]["a"] == 0.75 and result["names_recommended"]["b"] == 0.0
    assert result["names_gold"]["delta"] == 0.5 and result["names_recommended"]["unit"] == "responses"
    assert "dist1_ratio" in result and result["names_recommended"]["resamples"] <= 200
    with pytest.raises(ValueError, match="run #1 has 1 responses"):
        paired_bootstrap_outputs(HAND, outputs(["x"], [None], [[]]), [RecInResponse()])


# --- llm_judge: parsing -------------------------------------------------------------------------------------

SCORES = {"fluency": 2, "informativeness": 1, "persuasiveness": 0, "long_tail_relevance": 1}


@pytest.mark.parametrize("answer", [
    '{"fluency": 2, "informativeness": 1, "persuasiveness": 0, "long_tail_relevance": 1}',
    'Sure!\n```json\n{"Fluency": "2", "Informativeness": 1.0, "Persuasiveness": 0, "Long-tail relevance": 1}\n```',
    '{"scores": {"fluency": 2, "informativeness": 1, "persuasiveness": 0, "longtail": 1}, "why": "ok"}',
    "Fluency: 2\nInformativeness: 1\n**Persuasiveness**: 0\nLong-tail relevance: 1",
])
def test_judge_answers_in_any_reasonable_form_parse(answer):
    assert judge.parse(answer) == SCORES


@pytest.mark.parametrize("answer", [
    "I cannot rate this response.",
    "",
    '{"fluency": 3, "informativeness": 1, "persuasiveness": 0, "long_tail_relevance": 1}',  # out of range
    '{"fluency": 2, "informativeness": 1, "persuasiveness": 0}',  # an aspect missing
    '{"fluency": true, "informativeness": 1, "persuasiveness": 0, "long_tail_relevance": 1}',
    '{"fluency": 1.5, "informativeness": 1, "persuasiveness": 0, "long_tail_relevance": 1}',
    "Fluency: 2, Fluency: 1, Informativeness: 1, Persuasiveness: 0, Long-tail relevance: 1",  # contradicts itself
])
def test_malformed_judge_answers_are_unparsed(answer):
    assert judge.parse(answer) is None


def test_the_rubric_in_the_docs_is_the_code_s():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    assert judge.RUBRIC in text and f"rubric version {judge.RUBRIC_VERSION}" in text


# --- llm_judge: a fake OpenAI-compatible judge ---------------------------------------------------------------


class FakeJudge(BaseHTTPRequestHandler):
    """Rates by what the response says: a named recommendation well, '<movie>' poorly, 'UNRATEABLE' not at all."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.requests.append(body)
        case = body["messages"][-1]["content"].split("System response to rate:\n", 1)[1]
        if "UNRATEABLE" in case:
            content = "Sorry, I can only rate movie recommendations."
        elif "I recommend" in case:
            content = '{"fluency": 2, "informativeness": 2, "persuasiveness": 2, "long_tail_relevance": 1}'
        else:
            content = 'Scores: {"fluency": 1, "informativeness": 0, "persuasiveness": 0, "long_tail_relevance": 0}'
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server(serve_locally):
    FakeJudge.requests = []
    return serve_locally(FakeJudge)


def test_the_judge_is_off_unless_a_config_names_it(plugins):
    from harness import metric_families
    from harness.config import DEFAULTS

    config = copy.deepcopy(DEFAULTS)
    by_default = metric_families.build(plugins.registries, config)["conv"]
    assert "llm_judge" not in by_default and {"bleu_legacy", "rec_in_response"} <= set(by_default)
    config["extra_metrics"] = ["llm_judge"]
    added = metric_families.build(plugins.registries, config)["conv"]
    assert list(added) == [*by_default, "llm_judge"]
    config["metrics"], config["extra_metrics"] = ["ranking", "llm_judge"], None
    assert list(metric_families.build(plugins.registries, config)["conv"]) == ["llm_judge"]
    config["metrics"], config["extra_metrics"] = None, ["llm_jduge"]
    with pytest.raises(RegistryError, match="unknown metric 'llm_jduge': did you mean 'llm_judge'"):
        metric_families.build(plugins.registries, config)


def test_extra_metrics_must_be_a_list_of_names(run_bench):
    code, _, err = run_bench("run", "--model", "popularity", "--dry-run", "--set", "extra_metrics=llm_judge")
    assert code == 2 and "extra_metrics" in err and "must be a non-empty list of metric family names" in err


def test_judge_family_scores_counts_unparsed_and_caches(plugins, judge_server, tmp_path):
    from harness import metric_families
    from harness.config import DEFAULTS

    config = copy.deepcopy(DEFAULTS)
    config["metrics"] = ["llm_judge"]
    config["metric_params"] = {"judge_backend_params": {"base_url": judge_server, "model": "fake-judge"}}
    family = metric_families.build(plugins.registries, config, tmp_path)["conv"]["llm_judge"]
    cases = outputs(["I recommend Fargo.", "Maybe <movie>?", "UNRATEABLE", "I recommend Heat."],
                    ["Fargo", "Fargo", None, "Heat"], [[], [], [], []])
    values = family.instance.compute_outputs(cases)
    # parsed: 2,2,2,1 twice and 1,0,0,0 once; the third answer is unparsed and in no mean
    assert values == {"judge_fluency": 5 / 3, "judge_informativeness": 4 / 3, "judge_persuasiveness": 4 / 3,
                      "judge_longtail": 2 / 3, "judge_mean": (5 + 4 + 4 + 2) / 12, "n_judged": 3, "n_judge_unparsed": 1}
    assert len(FakeJudge.requests) == 4
    request = FakeJudge.requests[0]
    assert request["temperature"] == 0.0 and request["seed"] == 0 and request["model"] == "fake-judge"
    assert request["messages"][0]["content"] == judge.RUBRIC
    assert "Movie ranked first by the recommender: Fargo" in request["messages"][1]["content"]
    assert "Movie ranked first by the recommender: (none)" in FakeJudge.requests[2]["messages"][1]["content"]
    # the same outputs again, by a freshly built family: every answer from the JSON cache
    again = metric_families.build(plugins.registries, config, tmp_path)["conv"]["llm_judge"]
    assert again.instance.compute_outputs(cases) == values and len(FakeJudge.requests) == 4
    entries = sorted((tmp_path / "llm-generations").rglob("*.json"))
    assert len(entries) == 4 and all("text" in json.loads(p.read_text()) for p in entries)
    assert family.identity() == {
        "task": "conv", "version": "1",
        "params": {"judge_backend": "openai", "judge_backend_params": {"base_url": judge_server, "model": "fake-judge"}},
        "details": {"judge": {"kind": "openai", "model": "fake-judge", "base_url": judge_server}, "rubric": "1",
                    "decoding": {"temperature": 0.0, "seed": 0, "max_tokens": judge.MAX_TOKENS}}}


NAMING_GENERATOR = '''
from harness.api import hookimpl


class NamingGenerator:
    """By position i: names the recommender's top item (i % 3 == 0), says '<movie>' (1) or nothing a judge
    can rate (2); mode 'name' / 'plain' always takes the first / second form."""

    def __init__(self, ctx, mode: str = "cycle"):
        self.titles, self.mode = ctx.dataset.catalogue.titles, mode

    def fit(self, train, valid):
        return {"mode": self.mode}

    def generate(self, split, samples, recommendations):
        out = []
        for i in range(len(samples)):
            title = self.titles[int(recommendations[i][0])].rsplit(" (", 1)[0]
            kind = {"cycle": i % 3, "name": 0, "plain": 1}[self.mode]
            out.append([f"I recommend {title}.", "Maybe <movie>? It is a fun one.", "UNRATEABLE response"][kind])
        return out


@hookimpl
def crs_bench_register_generators(registry):
    registry.add("naming", NamingGenerator, "Names the recommender's top item, or not, by mode.")
'''

SMALL = ("--set", "dataset.params.num_items=80", "--quiet")


def test_a_judged_run_records_its_judge_and_a_rerun_costs_no_call(run_bench, tmp_path, judge_server):
    plugin = tmp_path / "naming.py"
    plugin.write_text(NAMING_GENERATOR)
    results = tmp_path / "results"
    judged = ("run", "--model", "popularity", "--generator", "naming", "--plugin", str(plugin), "--conv-limit", "6",
              "--set", "extra_metrics=[llm_judge]", "--set",
              f"metric_params.judge_backend_params={{base_url: '{judge_server}', model: fake-judge}}", *SMALL)
    code, _, err = run_bench(*judged, results=results)
    assert code == 0, err
    assert len(FakeJudge.requests) == 6
    [path] = results.glob("runs/*/record.json")
    record = json.loads(path.read_text())
    conv = record["metrics"]["conv"]["subset-6"]
    # positions 0, 3 name the item (2,2,2,1), 1, 4 say <movie> (1,0,0,0), 2, 5 are unrateable
    assert (conv["n_judged"], conv["n_judge_unparsed"]) == (4, 2)
    assert (conv["judge_fluency"], conv["judge_informativeness"], conv["judge_longtail"], conv["judge_mean"]) == (
        1.5, 1.0, 0.5, 1.0)
    assert conv["names_recommended"] == 2 / 6 and conv["n_with_recommendation"] == 6
    assert record["metric_families"]["llm_judge"]["details"]["judge"] == {
        "kind": "openai", "model": "fake-judge", "base_url": judge_server}
    assert record["metric_families"]["llm_judge"]["details"]["rubric"] == judge.RUBRIC_VERSION

    # another seed writes the same responses: every judgement is a cache hit
    code, _, err = run_bench(*judged, "--seed", "1", results=results)
    assert code == 0, err
    assert len(FakeJudge.requests) == 6
    first, second = sorted(p.parent for p in results.glob("runs/*/record.json"))
    code, out, _ = run_bench("rescore", str(first), "--check", "--plugin", str(plugin), "--cache-dir",
                             str(tmp_path / "cache"))
    assert code == 0 and "identical" in out and len(FakeJudge.requests) == 6
    # compare: the judge has no bootstrap terms, so it is named as not compared; the rest is compared
    code, out, err = run_bench("compare", str(first), str(second), "--plugin", str(plugin), "--cache-dir",
                               str(tmp_path / "cache"))
    assert code == 0, err
    assert "conv/subset-6:" in out and "not compared" in out and "llm_judge" in out.split("not compared")[1]
    assert len(FakeJudge.requests) == 6

    assert run_bench("leaderboard", "--plugin", str(plugin), results=results)[0] == 0
    markdown = (results / "LEADERBOARD.md").read_text()
    section = markdown[markdown.index("## synthetic · conv · subset-6"):]
    assert "6 of 358 test responses (subset: first 6 by SHA-256" in section
    assert "| judge_fluency | judge_informativeness | judge_persuasiveness | judge_longtail | judge_mean |" in section
    assert '"model": "fake-judge"' in section and "**Published**" not in markdown
