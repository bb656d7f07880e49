"""The HTML report (`bench leaderboard --html`, harness/report): structure tests that always run, and tests
in a real headless Chromium (Debian's `chromium` + `chromium-driver` through selenium) that skip with the
reason when no browser is installed (`.ci/run` installs one).

The browser tests open a site built from the committed `results/` into a temporary directory; its numbers
must be those of the committed `results/LEADERBOARD.json`. The paired bootstrap behind the ≈ marks takes
about a minute on the committed records, so the site is built with the committed JSON's marks (exact: the
JSON lists, per row, the metrics whose tie set holds it); `test_committed_results.py` proves that JSON fresh.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from harness.leaderboard import build_tables, outputs
from harness.report import write_site
from harness.report.site import Site, render_published, render_table, table_view
from harness.results import SCHEMA_VERSION, write_run

from .conftest import REPO_ROOT, shared_data_dir

RESULTS = REPO_ROOT / "results"


# ------------------------------------------------------------------------------------------- toy records


def toy_record(model, seed, recall10, loss="ce", tasks=("rec",), conv=None):
    families = {"ranking": {"task": "rec", "version": "1", "params": {}},
                "longtail": {"task": "rec", "version": "1", "params": {}}}
    metrics = {"rec": {"standard": {"recall@10": recall10, "coverage@10": 0.1 + recall10 / 2,
                                    "head_recall@10": recall10 * 2, "tail_recall@10": recall10 / 4,
                                    "n_head": 6, "n_tail": 4, "n_samples": 10}}}
    if conv is not None:
        families["distinct"] = {"task": "conv", "version": "1", "params": {}}
        metrics["conv"] = {"all": {"dist2_ratio": conv}}
    return {
        "schema_version": SCHEMA_VERSION, "run_id": f"{model}-{loss}-{seed}", "config_hash": f"{model}{loss}" * 4,
        "config": {"model": {"name": model, "params": {}}, "loss": {"name": loss}, "augmenter": {"name": "none"},
                   "seed": seed, "dataset": {"name": "toy", "params": {}}, "tiers": {"head_min": 6, "tail_max": 1},
                   "generator": {"name": "echo", "params": {"backbone": "tiny-lm"}} if conv is not None else None},
        "seeds": {}, "code": {"git_commit": "abc"}, "packages": {"numpy": "2"},
        "dataset": {"name": "toy", "fingerprint": "f" * 64, "splits": {"test": {"rec_samples": {"standard": 10}}}},
        "components": {"model": {"name": model}, "loss": {"name": loss}, "augmenter": {"name": "none"}},
        "plugins": [], "environment": {}, "timings": {"train_seconds": 1.5}, "tasks": sorted(metrics),
        "training": {"history": [{"epoch": 1, "train_loss": 2.0, "valid_recall@10": 0.1},
                                 {"epoch": 2, "train_loss": 1.0, "valid_recall@10": 0.2}]},
        "metrics": metrics, "metric_families": families, "artifacts": {},
    }


def toy_rows(offset=0, conv=False):
    rows = [{"id": f"test/{i}/1/0", "setting": "standard", "context": i, "label": 100 + i,
             "top": [100 + i + offset] + [200 + j for j in range(49)]} for i in range(10)]
    if conv:
        rows += [{"id": f"test/{i}/1", "task": "conv", "prediction": f"try <movie> {i}", "reference": f"ref {i}",
                  "response": f"try Film {i}", "recommended": 100 + i, "gold": [100 + i]} for i in range(3)]
    return rows


@pytest.fixture
def toy_site(tmp_path, plugins):
    results = tmp_path / "results"
    write_run(results / "runs" / "a0", toy_record("a", 0, 0.4, conv=0.5), toy_rows(conv=True))
    write_run(results / "runs" / "a1", toy_record("a", 1, 0.6, conv=0.7), toy_rows(conv=True))
    write_run(results / "runs" / "b0", toy_record("b", 0, 0.3), toy_rows(offset=1))
    prepared = {}
    outputs(results, plugins.registries, prepared=prepared)
    index = write_site(tmp_path / "site", prepared["tables"], prepared["views"], plugins.registries, None,
                       tmp_path / "cache")
    return index, prepared


def test_site_files_and_numbers_without_the_dataset(toy_site):
    index, prepared = toy_site
    html = index.read_text()
    assert "not loaded" in html  # 'toy' is no registered dataset: items by id, said on the page
    assert "Content-Security-Policy" in html and "http://" not in html and "https://" not in html
    assert "<strong>0.5000 ± 0.1414</strong>" in html  # a: mean ± sample std, bold = best, as in Markdown
    pages = sorted(p.name for p in (index.parent / "runs").glob("*.html"))
    assert len(pages) == 2
    figures = sorted(p.name for p in (index.parent / "figures").iterdir())
    assert any(name.endswith("-tiers.png") for name in figures) and any(name.endswith("-tiers.svg") for name in figures)
    assert not any("longtail" in name for name in figures)  # needs training popularity: not without the dataset


def test_conversation_rows_and_backbone_reach_the_run_page(toy_site):
    index, _ = toy_site
    page = next(p for p in (index.parent / "runs").glob("*.html") if "a · ce" in p.read_text())
    data = json.loads(re.search(r'<script type="application/json" id="samples-data">(.*?)</script>',
                                page.read_text(), re.S).group(1).replace("<\\/", "</"))
    assert data["seeds"] == ["0", "1"] and len(data["rows"]["0"]["standard"]) == 10
    first = data["conv"]["0"][0]
    assert first["response"] == "try Film 0" and first["reference"] == "ref 0"
    assert 'data-backbone="tiny-lm"' in index.read_text()  # the generator's declared backbone, a filter value


def test_stale_pages_are_removed(toy_site, plugins, tmp_path):
    index, prepared = toy_site
    stale = index.parent / "runs" / "0000000000000000.html"
    stale.write_text("old")
    write_site(index.parent, prepared["tables"], prepared["views"], plugins.registries, None, tmp_path / "cache",
               figures=False)
    assert not stale.exists() and len(list((index.parent / "runs").glob("*.html"))) == 2


def test_published_rows_are_a_table_of_their_own(plugins):
    [table] = build_tables([(None, toy_record("a", 0, 0.4)), (None, toy_record("b", 0, 0.3))], plugins.registries)
    tv = table_view(table, "t")
    tv.data["published"] = [{"title": "Paper, Table 2", "source": "a paper", "columns": {"R@10": "recall@10"},
                             "comparable": ["recall@10"], "notes": ["other split"],
                             "rows": [{"model": "PubModel", "evaluator": "theirs", "metrics": {"recall@10": 0.9}}]}]
    html = render_table(Site(Path("."), {}, {}), tv)
    board, published = html.split('<div class="published">')
    assert "PubModel" not in board and "PubModel" in published and "0.900" in published
    assert "<button" not in published and "aria-sort" not in published  # never sorted
    assert "recall@10 (R@10)" in published and "other split" in published
    bare = render_published({"model": "Bare", "metrics": {"recall@10": {"mean": 0.25}}})  # a row without a wrapper
    assert "Bare" in bare and "0.250" in bare


def test_cli_writes_the_site_with_tiers_and_figures(run_bench, tmp_path):
    """The synthetic dataset needs no files: tiers, titles, contexts and the long-tail curve are there."""
    results = tmp_path / "results"
    small = ("--set", "dataset.params.num_items=120", "--quiet")
    assert run_bench("run", "--model", "popularity", *small, results=results)[0] == 0
    assert run_bench("run", "--model", "repeat-context", *small, results=results)[0] == 0
    code, out, err = run_bench("leaderboard", "--html", str(tmp_path / "site"), results=results)
    assert code == 0, err
    assert f"site: {tmp_path / 'site' / 'index.html'}" in out
    figures = tmp_path / "site" / "figures"
    longtail = next(figures.glob("*-longtail.png"))
    assert longtail.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ElementTree.fromstring(next(figures.glob("*-longtail.svg")).read_text())  # well-formed SVG
    page = next((tmp_path / "site" / "runs").glob("*.html")).read_text()
    assert 'class="tier tier-' not in page  # badges are drawn by the script from the data:
    assert '"tiers":true' in page and "recommender" in page  # tiers known, contexts embedded
    [kept] = (tmp_path / "cache" / "report").glob("items-synthetic-*.json.gz")  # what the site took from the data
    kept.write_bytes(b"not gzip")  # a damaged entry is a miss: the dataset is read again and the entry rewritten
    assert run_bench("leaderboard", "--html", str(tmp_path / "site"), results=results)[0] == 0
    assert '"tiers":true' in next((tmp_path / "site" / "runs").glob("*.html")).read_text()
    assert json.loads(gzip.decompress(kept.read_bytes()))["format"] == 1
    code, _, err = run_bench("leaderboard", "--check", "--html", str(tmp_path / "x"), results=results)
    assert code == 2 and "--check" in err


# ------------------------------------------------------------------------------------------- the browser


def _chromium():
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (it is in requirements.txt)")
    binary = os.environ.get("CHROME_BIN") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run does) or set CHROME_BIN and CHROMEDRIVER")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as error:
        pytest.skip(f"Chromium did not start: {error.msg}")


@pytest.fixture(scope="module")
def browser():
    driver = _chromium()
    yield driver
    driver.quit()


def _key(table: dict) -> str:
    """The page's data-table key of a LEADERBOARD.json table (resampled-split tables end in |resampled)."""
    key = f"{table['dataset']}|{table['fingerprint']}|{table['task']}|{table['setting']}"
    return key + ("|resampled" if table.get("splits", "official") != "official" else "")


def _n(row: dict) -> str:
    """The n column of a LEADERBOARD.json row: seeds, or splits×seeds over resampled splits."""
    splits = row.get("splits")
    if not splits:
        return str(len(row["seeds"]))
    seeds = len(set(row["seeds"]))
    return f"{len(splits)}×{seeds}" if len(row["seeds"]) == len(splits) * seeds else f"{len(row['seeds'])} runs"


@pytest.fixture(scope="module")
def committed():
    if not (RESULTS / "LEADERBOARD.json").is_file():
        pytest.skip("no committed results in this checkout")
    return json.loads((RESULTS / "LEADERBOARD.json").read_text())


@pytest.fixture(scope="module")
def committed_site(tmp_path_factory, plugins, committed, browser):
    """The site of the committed records, with the committed JSON's significance marks."""
    prepared = {}
    outputs(RESULTS, plugins.registries, significance=False, prepared=prepared)
    entries = {_key(t): t for t in committed}
    for table in prepared["tables"]:
        entry = entries[_key({"dataset": table.dataset, "fingerprint": table.fingerprint, "task": table.task,
                              "setting": table.setting, "splits": table.splits})]
        assert [r["config_hash"] for r in entry["rows"]] == [r.config_hash for r in table.rows], "stale LEADERBOARD.json"
        for position, row in enumerate(entry["rows"]):
            for metric in row["tied_with_best"]:
                table.ties_with_best.setdefault(metric, set()).add(position)
    data = shared_data_dir()
    out = tmp_path_factory.mktemp("site")
    index = write_site(out, prepared["tables"], prepared["views"], plugins.registries,
                       data if data.is_dir() else None, REPO_ROOT / ".cache")
    return index


def _severe(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_index_loads_without_console_errors(browser, committed_site):
    browser.get(committed_site.as_uri())
    assert browser.title == "crs-bench leaderboard"
    assert browser.find_elements("css selector", "section.board-section table.board")
    loaded = browser.execute_script("return Array.from(document.querySelectorAll('figure.plot img'))"
                                    ".map(img => img.complete && img.naturalWidth > 0)")
    assert loaded and all(loaded), "a figure did not render"
    assert _severe(browser) == []


def _table_on_page(driver, key):
    return driver.execute_script("""
        const table = Array.from(document.querySelectorAll('section.board-section table.board'))
          .find(t => t.dataset.table === arguments[0]);
        return Array.from(table.tBodies[0].rows).map(row => row.dataset.hash);""", key)


def test_sorting_a_column_reorders_rows_as_the_json_says(browser, committed_site, committed):
    browser.get(committed_site.as_uri())
    entry = next(t for t in committed if t["task"] == "rec" and t["setting"] == "standard" and len(t["rows"]) > 3)
    key = _key(entry)
    assert _table_on_page(browser, key) == [row["config_hash"] for row in entry["rows"]]  # the JSON's order
    section = browser.find_element("css selector", f"table.board[data-table='{key}']")
    header = section.find_element("css selector", "th[data-key='coverage@10']")
    rows = list(entry["rows"])

    def sort(rows, sign):  # the page's rule: stable over the current order, rows without the value last
        present = [r for r in rows if "coverage@10" in r["metrics"]]
        return sorted(present, key=lambda r: sign * r["metrics"]["coverage@10"]["mean"]) + \
            [r for r in rows if r not in present]

    for sign, state in ((-1, "descending"), (1, "ascending")):  # first click: best first (higher is better)
        header.find_element("css selector", "button").click()
        assert header.get_attribute("aria-sort") == state
        rows = sort(rows, sign)
        assert _table_on_page(browser, key) == [r["config_hash"] for r in rows]
    assert section.find_element("css selector", "th[data-key='recall@10']").get_attribute("aria-sort") == "none"


def test_the_numbers_on_the_page_equal_the_committed_json(browser, committed_site, committed):
    browser.get(committed_site.as_uri())
    page = browser.execute_script("""
        const out = {};
        document.querySelectorAll('section.board-section table.board').forEach(table => {
          const rows = [];  // in page order (a returned object's keys may come back sorted)
          Array.from(table.tBodies[0].rows).forEach(row => {
            const cells = {};
            row.querySelectorAll('td[data-key]').forEach(td => {
              cells[td.dataset.key] = {mean: td.dataset.mean === undefined ? null : td.dataset.mean,
                                       std: td.dataset.std === undefined ? null : td.dataset.std,
                                       text: td.textContent, best: td.classList.contains('best'),
                                       tie: td.classList.contains('tie')};
            });
            rows.push([row.dataset.hash, {cells: cells, n: row.querySelector('td.n').textContent,
                                          model: row.dataset.model, loss: row.dataset.loss}]);
          });
          out[table.dataset.table] = rows;
        });
        return out;""")
    assert len(page) == len(committed)
    for entry in committed:
        ordered = page[_key(entry)]
        assert [hash_ for hash_, _ in ordered] == [row["config_hash"] for row in entry["rows"]]
        rows = dict(ordered)
        for row in entry["rows"]:
            shown = rows[row["config_hash"]]
            assert shown["n"] == _n(row) and shown["model"] == row["model"]
            assert set(shown["cells"]) == set(row["metrics"])
            for metric, value in row["metrics"].items():
                cell = shown["cells"][metric]
                assert float(cell["mean"]) == value["mean"], (row["config_hash"], metric)
                assert (None if cell["std"] is None else float(cell["std"])) == value["std"]
                text = f"{value['mean']:.4f}" + (f" ± {value['std']:.4f}" if value["std"] is not None else "")
                assert cell["text"].startswith(text)
                assert cell["tie"] == (metric in row["tied_with_best"] and not cell["best"])


def test_filters_hide_other_rows(browser, committed_site):
    browser.get(committed_site.as_uri())
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("css selector", "select[data-filter='model']")).select_by_value("kbrd")
    models = browser.execute_script("return Array.from(document.querySelectorAll('table.board:not(.static) tbody tr'))"
                                    ".filter(r => !r.hidden).map(r => r.dataset.model)")
    assert models and set(models) == {"kbrd"}
    assert "rows shown" in browser.find_element("id", "filter-count").text
    assert _severe(browser) == []


def test_a_run_page_shows_its_plots_and_samples(browser, committed_site):
    browser.get(committed_site.as_uri())
    link = browser.find_element("css selector", "tr[data-model='kbrd'][data-loss='ce'] td.label a")
    link.click()
    charts = browser.execute_script("return Array.from(document.querySelectorAll('svg.chart'))"
                                    ".map(svg => { const box = svg.getBoundingClientRect();"
                                    " return [svg.closest('section').id, box.width > 100 && box.height > 100]; })")
    sections = {section for section, visible in charts if visible}
    assert {"tiers", "training"} <= sections, charts
    assert len(browser.find_elements("css selector", "#training svg.chart polyline")) >= 2
    cards = browser.find_elements("css selector", "#browser article.sample")
    assert len(cards) == 20 and cards[0].find_elements("css selector", "ol li")
    if '"tiers":true' in browser.page_source:  # the dataset loaded (CRS_BENCH_DATA / ../shared/data)
        assert browser.find_elements("css selector", "#browser .tier")
    assert _severe(browser) == []


def test_a_screenshot_of_the_index_is_saved(browser, committed_site, tmp_path_factory):
    folder = Path(os.environ.get("CRS_BENCH_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    browser.get(committed_site.as_uri())
    path = folder / "leaderboard-index.png"
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def test_conversation_samples_in_the_browser(browser, toy_site):
    index, _ = toy_site
    browser.get(next(p for p in (index.parent / "runs").glob("*.html") if "a · ce" in p.read_text()).as_uri())
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("css selector", "select[data-control='setting']")).select_by_value("conversation")
    card = browser.find_element("css selector", "#browser article.sample.conv")
    assert card.find_element("css selector", ".generated").text.endswith("try Film 0")
    assert card.find_element("css selector", ".reference").text.endswith("ref 0")
    assert _severe(browser) == []
