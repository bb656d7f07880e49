"""Stored conversation runs (issue 13): `bench rescore --check` and `bench compare` on responses, and the
leaderboard's conversation tables (column order, heading facts, one table per subset and per judge, the
published LumiCRS rows kept apart from the measured ones)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.leaderboard import build_tables, outputs, render_markdown
from harness.results import SCHEMA_VERSION, read_samples, write_run
from tests.test_conversation_families import NAMING_GENERATOR

REPO = Path(__file__).resolve().parents[1]
SMALL = ("--set", "dataset.params.num_items=80", "--quiet")


def test_compare_and_rescore_a_conversation_run(run_bench, tmp_path):
    plugin = tmp_path / "naming.py"
    plugin.write_text(NAMING_GENERATOR)
    results = tmp_path / "results"
    common = ("run", "--model", "popularity", "--generator", "naming", "--plugin", str(plugin), *SMALL)
    for mode, extra in (("name", ()), ("plain", ()), ("plain", ("--conv-limit", "5"))):
        code, _, err = run_bench(*common, "--set", f"generator.params.mode={mode}", *extra, results=results)
        assert code == 0, err
    runs = {}
    for path in results.glob("runs/*/record.json"):
        record = json.loads(path.read_text())
        runs[(record["config"]["generator"]["params"]["mode"], record["config"]["conv_limit"])] = (path.parent, record)
    (named, named_record), (plain, plain_record) = runs[("name", None)], runs[("plain", None)]
    cache = ("--plugin", str(plugin), "--cache-dir", str(tmp_path / "cache"))

    code, out, err = run_bench("compare", str(named), str(plain), "--json", *cache)
    assert code == 0, err
    result = json.loads(out)
    conv = result["conv/all"]
    # every response of A names the recommender's top item, none of B's does
    assert (conv["names_recommended"]["a"], conv["names_recommended"]["b"]) == (1.0, 0.0)
    assert conv["names_recommended"]["significant"] and conv["names_recommended"]["low"] == 1.0
    for key in ("bleu2_legacy", "rougeL", "dist2_legacy", "sacrebleu"):  # every family with bootstrap terms
        a, b = named_record["metrics"]["conv"]["all"][key], plain_record["metrics"]["conv"]["all"][key]
        assert conv[key]["delta"] == pytest.approx(a - b, abs=1e-12), key
    assert conv["names_gold"]["unit"] == "responses" and "n_with_gold" not in conv
    assert result["standard"]["recall@10"]["delta"] == 0.0  # the same recommender on both sides
    code, text, _ = run_bench("compare", str(named), str(plain), *cache)
    assert code == 0 and "conv/all:" in text and "not compared" not in text

    # a run scored on a --conv-limit subset cannot be paired with one scored on every response
    subset, _ = runs[("plain", 5)]
    code, _, err = run_bench("compare", str(named), str(subset), *cache)
    assert code == 2 and "runs scored different conversation samples" in err and "subset-5, 5 responses" in err
    assert len(err.strip().splitlines()) == 1

    # rescore: identical from the stored rows; an edited prediction is detected
    code, out, _ = run_bench("rescore", str(plain), "--check", *cache)
    assert code == 0 and out.strip().endswith("identical")
    rows = read_samples(plain)
    edited = next(row for row in rows if row.get("task") == "conv")
    edited["prediction"] = "zebra quokka narwhal"
    write_run(plain, plain_record, rows)
    code, out, _ = run_bench("rescore", str(plain), "--check", *cache)
    assert code == 1 and "differs" in out
    assert "conv/all/dist1_legacy: stored" in out and "conv/all/names_recommended" not in out  # raw responses unchanged


def conv_record(model: str, setting: str, bleu2: float, judge_model: str | None = None, samples: int = 5,
                test_samples: int = 960, dataset: str = "inspired") -> dict:
    families = {name: {"task": "conv", "version": "1", "params": {}}
                for name in ("bleu_legacy", "rouge", "distinct", "sacrebleu", "rec_in_response")}
    values = {"bleu2_legacy": bleu2, "bleu3_legacy": bleu2 / 2, "rouge2": 0.05, "rougeL": 0.2, "dist2_legacy": 3.0,
              "dist3_legacy": 4.0, "dist4_legacy": 5.0, "dist2_ratio": 0.5, "dist3_ratio": 0.6, "dist4_ratio": 0.7,
              "sacrebleu": 1.5, "names_recommended": 0.25, "names_gold": 0.125, "n_with_gold": 2,
              "n_with_recommendation": samples}
    if judge_model is not None:
        families["llm_judge"] = {"task": "conv", "version": "1", "params": {"judge_backend": "openai"},
                                 "details": {"judge": {"kind": "openai", "model": judge_model}, "rubric": "1"}}
        values.update(judge_fluency=1.5, judge_informativeness=1.0, judge_persuasiveness=0.5, judge_longtail=0.25,
                      judge_mean=0.8125, n_judged=samples, n_judge_unparsed=0)
    subset = "all" if setting == "all" else f"first {samples} by SHA-256('conv-subset:' + sample id)"
    return {
        "schema_version": SCHEMA_VERSION, "run_id": f"{model}-{setting}-{judge_model}", "config_hash": f"{model}{setting}{judge_model}",
        "config": {"model": {"name": model}, "loss": {"name": "ce"}, "augmenter": {"name": "none"}, "seed": 0,
                   "generator": {"name": "toy", "params": {}}},
        "seeds": {}, "code": {}, "packages": {}, "dataset": {"name": dataset, "fingerprint": "f" * 64},
        "components": {"model": {"name": model}, "loss": {"name": "ce"}, "augmenter": {"name": "none"}},
        "plugins": [], "environment": {}, "timings": {}, "training": {}, "artifacts": {}, "tasks": ["conv"],
        "metrics": {"conv": {setting: values}}, "metric_families": families,
        "conversation": {"samples": samples, "test_samples": test_samples, "subset": subset},
    }


def test_conversation_tables_split_by_subset_and_by_judge(plugins):
    records = [conv_record("a", "all", 0.02, samples=960), conv_record("b", "all", 0.03, samples=960),
               conv_record("a", "subset-5", 0.04), conv_record("a", "subset-6", 0.05, samples=6),
               conv_record("c", "all", 0.01, judge_model="judge-1", samples=960),
               conv_record("d", "all", 0.01, judge_model="judge-2", samples=960)]
    tables = build_tables([(None, r) for r in records], plugins.registries)
    shape = [(t.setting, sorted(row.label["model"] for row in t.rows)) for t in tables]
    # runs without the judge and the first judged run share a table (the judge adds columns); a run judged by
    # another model opens a table of its own; each --conv-limit subset is a setting, so a table, of its own
    assert shape == [("all", ["a", "b", "c"]), ("all", ["d"]), ("subset-5", ["a"]), ("subset-6", ["a"])]
    first = tables[0]
    assert first.columns() == ["bleu2_legacy", "bleu3_legacy", "rouge2", "rougeL", "dist2_legacy", "dist3_legacy",
                               "dist4_legacy", "dist2_ratio", "dist3_ratio", "dist4_ratio", "sacrebleu",
                               "names_recommended", "names_gold", "judge_fluency", "judge_informativeness",
                               "judge_persuasiveness", "judge_longtail", "judge_mean"]
    assert [row.label["model"] for row in first.rows] == ["b", "a", "c"]  # by bleu2_legacy, the first column
    assert first.rows[0].counts == {"n_with_gold": 2, "n_with_recommendation": 960}
    text = render_markdown(tables)
    assert "960 of 960 test responses (subset: all)" in text
    assert "5 of 960 test responses (subset: first 5 by SHA-256('conv-subset:' + sample id))" in text
    assert '"model": "judge-2"' in text and '"model": "judge-1"' in text


def test_published_rows_stand_apart_in_the_full_inspired_table(plugins, tmp_path):
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    (results / "published.yaml").write_text((REPO / "results" / "published.yaml").read_text())
    for record in (conv_record("a", "all", 0.05, samples=960), conv_record("b", "all", 0.01, samples=960),
                   conv_record("a", "subset-5", 0.04)):
        write_run(results / "runs" / record["run_id"], record, [])
    files = outputs(results, plugins.registries, significance=False)
    markdown = files[results / "LEADERBOARD.md"]
    full = markdown[markdown.index("## inspired · conv · all"):markdown.index("## inspired · conv · subset-5")]
    measured, published = full.split("**Published**")
    # the measured rows first, ranked; LumiCRS's higher BLEU-2 (0.044 < 0.05 here) never takes the bold
    assert measured.index("| a | ce | none | toy | 1 | **0.0500** |") < measured.index("| b | ce | none | toy | 1 | 0.0100 |")
    assert "LumiCRS" not in measured
    assert "| published | evaluator | bleu2_legacy (BLEU-2) | bleu3_legacy (BLEU-3) | rouge2 (ROUGE-2) |" in published
    assert "| LumiCRS | UniCRS-style | 0.044 | 0.021 | 0.056 | 0.242 | 4.400 | 6.900 | 7.400 |" in published
    assert "| KBRD | CRSLab-style | 0.021 | 0.007 |" in published and "**0.044" not in published
    assert "Comparable in kind with the measured columns: `bleu2_legacy`, `bleu3_legacy`, `dist2_legacy`, " \
           "`dist3_legacy`, `dist4_legacy`; the other published columns are not (`rouge2`, `rougeL`)." in published
    assert "ROUGE is not comparable" in published
    assert "**Published**" not in markdown[markdown.index("## inspired · conv · subset-5"):]  # Dist depends on J
    data = json.loads(files[results / "LEADERBOARD.json"])
    full_json = next(t for t in data if t["setting"] == "all")
    assert [row["model"] for row in full_json["rows"]] == ["a", "b"]
    [lumi] = [row for row in full_json["published"][0]["rows"] if row["model"] == "LumiCRS"]
    assert lumi["metrics"]["dist4_legacy"] == 7.4 and full_json["conversation"]["samples"] == 960
    assert "LumiCRS" not in files[results / "LEADERBOARD.csv"]


def test_the_published_file_matches_the_reference_table():
    """Every INSPIRED and ReDial value of docs/PROTOCOL.md §7.3 (LumiCRS Table 6), transcribed once."""
    from harness.published import load_published

    tables = {t.dataset: t for t in load_published(REPO / "results")}
    assert set(tables) == {"inspired", "redial"}
    inspired = {row.model: row.values for row in tables["inspired"].rows}
    assert list(inspired) == ["KBRD", "KGSF", "UniCRS", "DCRS", "DisenCRS", "MSCRS", "LumiCRS"]
    assert [inspired["MSCRS"][k] for k in tables["inspired"].keys()] == [0.040, 0.019, 0.052, 0.235, 4.197, 5.983, 6.556]
    assert inspired["KGSF"]["dist4_legacy"] == 2.790 and tables["redial"].comparable == ()
    assert {row.model: row.values for row in tables["redial"].rows}["UniCRS"]["dist2_legacy"] == 0.433


@pytest.mark.parametrize("body, message", [
    ("conversation:\n  - {dataset: inspired, source: s, columns: {B: bleu2_legacy}, rows: [{model: m, values: {X: 1}}]}\n",
     "conversation[0]: rows[0] ('m'): value(s) ['X'] name no column"),
    ("conversation:\n  - {dataset: inspired, columns: {B: bleu2_legacy}, rows: [{model: m}]}\n",
     "conversation[0]: field 'source' is required"),
    ("conversation:\n  - {dataset: inspired, source: s, columns: {B: b}, comparable: [c], rows: [{model: m}]}\n",
     "field 'comparable' must list harness keys"),
    ("rec: []\n", "top-level keys must be among ['conversation']"),
])
def test_a_bad_published_file_names_file_entry_and_field(tmp_path, body, message):
    from harness.published import PublishedError, load_published

    (tmp_path / "published.yaml").write_text(body)
    with pytest.raises(PublishedError) as error:
        load_published(tmp_path)
    assert message in str(error.value) and "published.yaml" in str(error.value)
