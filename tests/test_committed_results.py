"""The committed leaderboard is what the committed records give (issue 2: `bench leaderboard --check`)."""
from __future__ import annotations

from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.skipif(not (RESULTS / "runs").is_dir(), reason="no committed results in this checkout")
def test_committed_leaderboard_is_up_to_date(plugins):
    from harness.leaderboard import stale_files

    stale = stale_files(RESULTS, plugins.registries)
    assert stale == [], f"run `bench leaderboard` and commit: {', '.join(map(str, stale))} are stale"


def test_every_committed_run_has_a_record_and_samples():
    for run_dir in sorted((RESULTS / "runs").iterdir()) if (RESULTS / "runs").is_dir() else []:
        assert (run_dir / "record.json").is_file(), f"{run_dir.name}: no record.json (an unfinished run?)"
        assert (run_dir / "samples.jsonl.gz").is_file(), f"{run_dir.name}: no samples.jsonl.gz"


def test_every_committed_record_is_at_the_current_schema():
    import json

    from harness.results import SCHEMA_VERSION

    for path in sorted((RESULTS / "runs").glob("*/record.json")) if (RESULTS / "runs").is_dir() else []:
        record = json.loads(path.read_text())
        assert record["schema_version"] == SCHEMA_VERSION, f"{path}: run `bench migrate`"
        assert record["run_id"] == path.parent.name
