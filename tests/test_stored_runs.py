"""`bench rescore` and `bench compare` on finished runs (issue 4 acceptance)."""
from __future__ import annotations

import json

from harness.results import RECORD_FILE


def run_dirs(results):
    return sorted(p.parent for p in (results / "runs").glob(f"*/{RECORD_FILE}"))


def test_inspired_popularity_full_suite_rescore_and_compare(run_bench, tmp_path, data_dir):
    results = tmp_path / "results"
    for model in ("popularity", "repeat-context"):
        code, _, err = run_bench("run", "--model", model, "--dataset", "inspired", "--data-dir", str(data_dir),
                                 "--quiet", results=results)
        assert code == 0, err
    popularity, repeat = run_dirs(results)  # sorted: inspired__popularity... < inspired__repeat-context...
    record = json.loads((popularity / RECORD_FILE).read_text())
    for setting in ("standard", "novel"):
        values = record["metrics"]["rec"][setting]
        for key in ("recall@1", "recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50",
                    "tail_recall@10", "head_recall@10", "body_recall@10", "n_tail", "coverage@10", "coverage@50",
                    "ild@10", "ild@50", "pwp@10", "pwp@50", "arp@10", "arp@50"):
            assert key in values, (setting, key)
    assert record["metrics"]["rec"]["standard"]["coverage@10"] == 10 / 1472

    code, out, _ = run_bench("rescore", str(popularity), "--check", "--data-dir", str(data_dir),
                             "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and out.strip().endswith("identical")

    code, out, _ = run_bench("compare", str(popularity), str(repeat), "--json", "--data-dir", str(data_dir),
                             "--cache-dir", str(tmp_path / "cache"))
    assert code == 0
    recall1 = json.loads(out)["standard"]["recall@1"]
    assert recall1["delta"] == -0.06640625  # 0.0430 - 0.1094 (11 vs 28 hits of 256)
    assert recall1["high"] < 0 and recall1["significant"]


def test_two_seeds_of_one_model_are_mostly_indistinguishable(run_bench, tmp_path):
    results = tmp_path / "results"
    common = ("--model", "linear-context", "--epochs", "6", "--quiet", "--set", "train.lr=0.01")
    for seed in ("0", "1"):
        assert run_bench("run", *common, "--seed", seed, results=results)[0] == 0
    first, second = run_dirs(results)
    code, out, _ = run_bench("compare", str(first), str(second), "--json", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0
    rows = [row for row in json.loads(out)["standard"].values() if row["delta"] is not None]
    contains_zero = sum(row["low"] <= 0 <= row["high"] for row in rows)
    assert contains_zero / len(rows) > 0.5

    # a quoted glob puts both seeds on one side: A is their per-resample mean, so A - B(seed 0) is half of
    # the seed-1 - seed-0 difference
    pattern = str(results / "runs" / "*linear-context*")
    code, out, err = run_bench("compare", pattern, str(first), "--json", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    pair = json.loads(run_bench("compare", str(second), str(first), "--json",
                                "--cache-dir", str(tmp_path / "cache"))[1])["standard"]
    for key, row in json.loads(out)["standard"].items():
        if row["delta"] is not None and key.startswith(("recall@", "ndcg@", "mrr@")):
            assert abs(row["delta"] - pair[key]["delta"] / 2) < 1e-9, key
    code, _, err = run_bench("compare", str(results / "runs" / "nothing*"), str(first))
    assert code != 0 and "no finished run matches" in err


def test_rescore_updates_a_record_when_metrics_change(run_bench, tmp_path):
    results = tmp_path / "results"
    assert run_bench("run", "--model", "popularity", "--quiet", "--set", "metrics=[ranking]", results=results)[0] == 0
    [run_dir] = run_dirs(results)
    record = json.loads((run_dir / RECORD_FILE).read_text())
    record["metrics"]["rec"]["standard"]["recall@10"] = 0.999  # a stale value, e.g. from an old metric version
    (run_dir / RECORD_FILE).write_text(json.dumps(record))
    code, out, _ = run_bench("rescore", str(run_dir), "--check", "--cache-dir", str(tmp_path / "cache"))
    assert code == 1 and "standard/recall@10: stored 0.999" in out
    code, out, _ = run_bench("rescore", str(run_dir), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and "updated" in out
    assert json.loads((run_dir / RECORD_FILE).read_text())["metrics"]["rec"]["standard"]["recall@10"] != 0.999
