"""`bench samples`: a seeded draw of stored conversation outputs, the same samples for every run given."""
from __future__ import annotations

from pathlib import Path

from harness.results import read_samples
from harness.sample_view import draw
from tests.test_conversation_families import NAMING_GENERATOR

SMALL = ("--set", "dataset.params.num_items=80", "--quiet")


def test_the_draw_is_seeded_sorted_and_without_repeats():
    ids = [f"test/{i}/2" for i in range(30)]
    first = draw(ids, 5, seed=3)
    assert first == draw(list(reversed(ids)), 5, seed=3)  # the input order does not matter
    assert len(set(first)) == 5 and first == sorted(first) and set(first) <= set(ids)
    assert draw(ids, 5, seed=4) != first
    assert draw(ids, 50, seed=0) == sorted(ids)


def test_bench_samples_shows_the_same_drawn_samples_for_every_run(run_bench, tmp_path):
    plugin = tmp_path / "naming.py"
    plugin.write_text(NAMING_GENERATOR)
    results = tmp_path / "results"
    for mode in ("name", "plain"):
        code, _, err = run_bench("run", "--model", "popularity", "--generator", "naming", "--plugin", str(plugin),
                                 "--set", f"generator.params.mode={mode}", *SMALL, results=results)
        assert code == 0, err
    runs = sorted(str(path.parent) for path in results.glob("runs/*/record.json"))
    code, out, err = run_bench("samples", *runs, "--n", "3", "--seed", "7", "--plugin", str(plugin),
                               "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    conv = [row for row in read_samples(Path(runs[0])) if row.get("task") == "conv"]
    expected = draw([row["id"] for row in conv], 3, seed=7)
    assert out.splitlines()[0] == f"3 of {len(conv)} conversation samples, drawn with seed 7"
    assert [line.split("`")[1] for line in out.splitlines() if line.startswith("### ")] == expected
    by_id = {row["id"]: row for row in conv}
    for uid in expected:
        assert f"**Reference** (items masked): {by_id[uid]['reference']}" in out
    assert out.count("**popularity+naming") == 6  # each sample: one line per run
