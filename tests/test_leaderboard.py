from __future__ import annotations

import json

import pytest

from harness.leaderboard import build_tables, outputs, render_markdown, stale_files
from harness.results import SCHEMA_VERSION, write_run


def record(model, seed, recall10, fingerprint="f" * 64, versions=None, arp=0.5, config_hash=None):
    families = {name: {"task": "rec", "version": version, "params": {}}
                for name, version in (versions or {"ranking": "1", "longtail": "1"}).items()}
    return {
        "schema_version": SCHEMA_VERSION, "run_id": f"{model}-{seed}-{fingerprint[:4]}", "config_hash": config_hash or model * 4,
        "config": {"model": {"name": model}, "loss": {"name": "ce"}, "augmenter": {"name": "none"}, "seed": seed},
        "seeds": {}, "code": {}, "packages": {}, "dataset": {"name": "toy", "fingerprint": fingerprint},
        "components": {"model": {"name": model}, "loss": {"name": "ce"}, "augmenter": {"name": "none"}},
        "plugins": [], "environment": {}, "timings": {}, "training": {}, "tasks": ["rec"],
        "metrics": {"rec": {"standard": {"recall@10": recall10, "arp@10": arp, "n_samples": 10}}},
        "metric_families": families, "artifacts": {},
    }


def test_mean_std_over_seeds_and_best_marked(plugins):
    tables = build_tables([(None, record("a", 0, 0.2)), (None, record("a", 1, 0.4)), (None, record("b", 0, 0.1, arp=0.1))],
                          plugins.registries)
    [table] = tables
    rows = {row.label["model"]: row for row in table.rows}
    assert rows["a"].mean("recall@10") == pytest.approx(0.3)
    assert rows["a"].std("recall@10") == pytest.approx(0.1414213562)  # sample std, n - 1
    assert rows["b"].std("recall@10") is None and rows["a"].seeds == [0, 1]
    text = render_markdown(tables)
    assert "| a | ce | none | 2 | **0.3000 ± 0.1414** | 0.5000 ± 0.0000 |" in text
    assert "| b | ce | none | 1 | 0.1000 | **0.1000** |" in text  # ARP: lower is better, as longtail declares
    assert rows["a"].counts == {"n_samples": 10}  # declared a count by the ranking family: not a column


def test_without_declarations_no_column_is_guessed():
    [table] = build_tables([(None, record("a", 0, 0.2, arp=0.1)), (None, record("b", 0, 0.1, arp=0.5))])
    assert table.columns() == [] and table.direction("arp@10") == "higher"  # the core knows no metric


def test_records_that_are_not_comparable_are_never_mixed():
    tables = build_tables([(None, record("a", 0, 0.2)), (None, record("a", 1, 0.4, fingerprint="e" * 64)),
                           (None, record("a", 2, 0.6, versions={"ranking": "2"}))])
    assert len(tables) == 3
    assert {t.families["ranking"]["version"] for t in tables} == {"1", "2"}
    assert all(len(t.rows) == 1 and len(t.rows[0].seeds) == 1 for t in tables)


def test_a_family_only_some_runs_have_adds_a_column_not_a_table(plugins):
    tables = build_tables([(None, record("a", 0, 0.2, versions={"ranking": "1"})), (None, record("b", 0, 0.3))],
                          plugins.registries)
    [table] = tables
    assert set(table.families) == {"ranking", "longtail"} and len(table.rows) == 2


def test_check_detects_stale_files(tmp_path):
    run_dir = tmp_path / "runs" / "one"
    write_run(run_dir, record("a", 0, 0.2), [{"id": "x"}])
    assert len(stale_files(tmp_path)) == 3
    for path, text in outputs(tmp_path).items():
        path.write_text(text)
    assert stale_files(tmp_path) == []
    write_run(tmp_path / "runs" / "two", record("a", 1, 0.4), [{"id": "y"}])
    assert len(stale_files(tmp_path)) == 3
    data = json.loads(outputs(tmp_path)[tmp_path / "LEADERBOARD.json"])
    assert data[0]["rows"][0]["seeds"] == [0, 1]


def test_rows_indistinguishable_from_the_best_are_marked(run_bench, tmp_path):
    """popularity by dialogue counts vs by label counts: nearly the same list, so ≈; repeat-context differs."""
    results = tmp_path / "results"
    small = ("--set", "dataset.params.num_items=120", "--quiet")
    assert run_bench("run", "--model", "popularity", *small, results=results)[0] == 0
    assert run_bench("run", "--model", "popularity", "--set", "model.params.counts=label_counts", *small,
                     results=results)[0] == 0
    assert run_bench("run", "--model", "repeat-context", *small, results=results)[0] == 0
    code, out, _ = run_bench("leaderboard", "--print", results=results)
    assert code == 0
    data = json.loads((results / "LEADERBOARD.json").read_text())
    standard = next(t for t in data if t["setting"] == "standard")
    by_model = {}
    for row in standard["rows"]:
        by_model.setdefault(row["model"], []).append(row)
    best_r50 = max(standard["rows"], key=lambda r: r["metrics"]["recall@50"]["mean"])
    assert best_r50["model"] == "popularity" and "recall@50" in best_r50["tied_with_best"]
    other_popularity = next(r for r in by_model["popularity"] if r is not best_r50)
    assert other_popularity["tied_with_best"]  # e.g. recall@10: the two global lists barely differ at the top
    assert "recall@50" not in by_model["repeat-context"][0]["tied_with_best"]
    assert "≈" in out


def test_ties_use_one_item_map_across_runs(tmp_path, plugins):
    """Two runs with the same hits but different other items in their lists must be tied, not 'different'."""
    from harness.leaderboard import mark_ties_with_best
    from harness.results import iter_records

    def rows(filler):
        return [{"id": f"s{i}", "setting": "standard", "context": i, "label": 1000 + i,
                 "top": [1000 + i if i % 2 else filler + i] + [filler + 100 + j for j in range(49)]}
                for i in range(40)]

    write_run(tmp_path / "runs" / "a", record("a", 0, 0.5), rows(5000))
    write_run(tmp_path / "runs" / "b", record("b", 0, 0.5), rows(7000))
    tables = build_tables(((p.parent, r) for p, r in iter_records(tmp_path)), plugins.registries)
    mark_ties_with_best(tables)
    assert tables[0].ties_with_best["recall@10"] == {0, 1}


def test_views_select_the_rows_their_recipes_produce(tmp_path, plugins):
    from harness.config import config_hash, load_recipe, resolve
    from harness.leaderboard_views import load_views, select_rows

    (tmp_path / "benchmarks").mkdir()
    recipe = tmp_path / "benchmarks" / "pair.yaml"
    recipe.write_text("dataset: synthetic\nseeds: [0, 1]\ngrid:\n  model: [popularity, repeat-context]\n")
    hashes = {config["model"]["name"]: config_hash(config) for config in resolve(load_recipe(recipe))}
    results = tmp_path / "results"
    results.mkdir()
    (results / "views.yaml").write_text("views:\n  - title: The pair\n    recipes: [benchmarks/pair.yaml]\n"
                                        "    columns: [recall@10]\n    settings: [standard]\n")
    records = [record("popularity", 0, 0.2, config_hash=hashes["popularity"]),
               record("popularity", 1, 0.4, config_hash=hashes["popularity"]),
               record("repeat-context", 0, 0.35, config_hash=hashes["repeat-context"]),
               record("other", 0, 0.9)]
    tables = build_tables([(None, r) for r in records], plugins.registries)
    [view] = load_views(results)
    select_rows([view], tables)
    [table] = view.tables
    assert [row.label["model"] for row in table.rows] == ["repeat-context", "popularity"]  # by recall@10
    text = render_markdown(tables, [view])
    section = text[text.index("## View: The pair"):]
    assert "| other |" not in section and "arp@10" not in section
    assert "| popularity | ce | none | 2 | 0.3000 ± 0.1414 |" in section
    assert "| repeat-context | ce | none | 1 | **0.3500** |" in section


@pytest.mark.parametrize("body, message", [
    ("views:\n  - title: A\n    recipes: [missing.yaml]\n", "view 1 ('A'): field 'recipes': recipe"),
    ("views:\n  - title: A\n    recipes: [r.yaml]\n    colums: [recall@10]\n", "unknown field(s) ['colums']"),
    ("views:\n  - title: A\n", "field 'recipes' must name at least one recipe"),
    ("views: [\n", "views.yaml:2: malformed YAML"),
])
def test_a_bad_views_file_names_file_view_and_field(tmp_path, body, message):
    from harness.config import ConfigError
    from harness.leaderboard_views import load_views

    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "r.yaml").write_text("model: {name: popularity}\n")
    (results / "views.yaml").write_text(body)
    with pytest.raises(ConfigError) as error:
        load_views(results)
    assert message in str(error.value) and "views.yaml" in str(error.value)


def test_backbone_and_variant_name_the_row_instead_of_a_hash(plugins):
    def with_details(seed, recall10, config_hash, **details):
        rec = record("dcrs", seed, recall10, config_hash=config_hash)
        rec["components"]["model"]["details"] = details
        return rec

    tables = build_tables([(None, with_details(0, 0.2, "h1" * 8, backbone="hybrid", variant="bm25")),
                           (None, with_details(0, 0.3, "h2" * 8, backbone="hybrid", variant="random")),
                           (None, with_details(0, 0.1, "h3" * 8, backbone="prompt-lm"))], plugins.registries)
    [table] = tables
    assert sorted(row.label["model"] for row in table.rows) == ["dcrs (hybrid, bm25)", "dcrs (hybrid, random)",
                                                               "dcrs (prompt-lm)"]
    assert all("[" not in row.label["augmenter"] for row in table.rows)  # distinct names: no hash needed
