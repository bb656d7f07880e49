from __future__ import annotations

import json

import pytest

from harness.leaderboard import build_tables, outputs, render_markdown, stale_files
from harness.results import write_run


def record(model, seed, recall10, fingerprint="f" * 64, versions=None, arp=0.5, config_hash=None):
    return {
        "schema_version": 1, "run_id": f"{model}-{seed}-{fingerprint[:4]}", "config_hash": config_hash or model * 4,
        "config": {"model": {"name": model}, "loss": {"name": "ce"}, "augmenter": {"name": "none"}, "seed": seed},
        "seeds": {}, "code": {}, "packages": {}, "dataset": {"name": "toy", "fingerprint": fingerprint},
        "components": {"model": {"name": model}, "loss": {"name": "ce"}, "augmenter": {"name": "none"}},
        "plugins": [], "environment": {}, "timings": {}, "training": {},
        "metrics": {"standard": {"recall@10": recall10, "arp@10": arp, "n_samples": 10}},
        "metric_versions": versions or {"ranking": "1"}, "artifacts": {},
    }


def test_mean_std_over_seeds_and_best_marked():
    tables = build_tables([record("a", 0, 0.2), record("a", 1, 0.4), record("b", 0, 0.1, arp=0.1)])
    [table] = tables
    rows = {row.label["model"]: row for row in table.rows}
    assert rows["a"].mean("recall@10") == pytest.approx(0.3)
    assert rows["a"].std("recall@10") == pytest.approx(0.1414213562)  # sample std, n - 1
    assert rows["b"].std("recall@10") is None and rows["a"].seeds == [0, 1]
    text = render_markdown(tables)
    assert "| a | ce | none | 2 | **0.3000 ± 0.1414** | 0.5000 ± 0.0000 |" in text
    assert "| b | ce | none | 1 | 0.1000 | **0.1000** |" in text  # ARP: lower is better


def test_records_that_are_not_comparable_are_never_mixed():
    tables = build_tables([record("a", 0, 0.2), record("a", 1, 0.4, fingerprint="e" * 64),
                           record("a", 2, 0.6, versions={"ranking": "2"})])
    assert len(tables) == 3
    assert all(len(t.rows) == 1 and len(t.rows[0].seeds) == 1 for t in tables)


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
