"""`dike browse` in a real browser. A tiny grid (tiny-llama, base and magnitude 50 %, CrowS-Pairs and StereoSet) is run,
analysed and browsed; headless Chromium (Debian's chromium and chromium-driver, driven by selenium) opens the page with
name resolution switched off, and what it renders must be the analysis files: the runs, every effect's Δ and CI, the
headline test's p, exactly the flipped items of a comparison with their text, group and both runs' margins (StereoSet's
text joined from the benchmark data); the search box filters and a header click sorts. A screenshot is saved.

Without chromium, chromedriver or selenium the test is skipped with the reason, unless DIKE_REQUIRE_BROWSER=1 (set by
.ci/run, which installs them): then it fails."""
import os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIKE = [sys.executable, "-m", "dike.cli"]
GRID = """name: browse
defaults: {n_boot: 50, limit: 40}
experiments:
  - models: [tiny-llama]
    compress: [none, "magnitude:0.5"]
    benchmarks: [crows_pairs, stereoset]
"""


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver (Debian: chromium-driver)", driver)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; .ci/run installs them)"
        if os.environ.get("DIKE_REQUIRE_BROWSER") == "1": pytest.fail(f"DIKE_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions(); o.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1000",
              "--host-resolver-rules=MAP * ~NOTFOUND"):                # no name resolves: the page must need no network
        o.add_argument(a)
    d = webdriver.Chrome(options=o, service=Service(driver))
    yield d
    d.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory, data_dir):
    "A tiny grid run, analysed and browsed (its folder: page.html, results/)."
    tmp = tmp_path_factory.mktemp("browse")
    env = dict(os.environ, DIKE_RESULTS_DIR=str(tmp / "results"), DIKE_ARCHIVE_DIR=str(tmp / "archive"),
               DIKE_DATA_DIR=str(data_dir), DIKE_THREADS="1", OMP_NUM_THREADS="1")
    g = tmp / "browse.yaml"; g.write_text(GRID)
    for args in (["run", str(g)], ["analyze", str(g), "--n-boot", "200", "--n-sim", "100", "--quiet"],
                 ["browse", str(g), "--out", str(tmp / "page.html")]):
        r = subprocess.run(DIKE + args, env=env, cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    assert "4 runs, 2 comparisons" in r.stdout, r.stdout
    return tmp


def open_page(d, path: Path):
    from selenium.webdriver.support.ui import WebDriverWait
    d.get(path.as_uri())
    WebDriverWait(d, 60).until(lambda d: d.execute_script(
        "return document.body.dataset.ready === '1' || document.getElementById('status').className === 'error'"))
    assert d.execute_script("return document.body.dataset.ready") == "1", d.execute_script(
        "return document.getElementById('status').textContent")


def rendered(d, table: str) -> list[list[str]]:
    "The cell texts of every row the table shows (all on one page), as the DOM holds them."
    d.execute_script(f"window.dike.tables.{table}.page.len(-1).draw(false)")
    return d.execute_script(f"return [...document.querySelectorAll('#{table} tbody tr')]"
                            ".filter(r => !r.querySelector('td.dt-empty')).map(r => [...r.cells].map(c => c.textContent))")


def num(s: str) -> float:
    return np.nan if s == "" else float(s)


def same(shown: str, value) -> bool:
    "A number shown with 4 significant digits is the analysis file's value."
    return bool(np.isclose(num(shown), value, rtol=1e-3, atol=1e-12, equal_nan=True))


def test_the_page_shows_the_analysis_files_and_sorts_and_filters(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from dike.browse import EFFECT_COLUMNS, MAX_BYTES
    d, an = browser, page / "results" / "analysis" / "browse"
    assert (page / "page.html").stat().st_size <= MAX_BYTES
    open_page(d, page / "page.html")
    resources = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(r.startswith(("blob:", "data:")) for r in resources), resources        # nothing fetched from anywhere
    c, fl = pd.read_parquet(an / "comparisons.parquet"), pd.read_parquet(an / "flips.parquet")
    assert sorted(r[0] for r in rendered(d, "runs")) == sorted(set(fl.run_a) | set(fl.run_b))
    E = EFFECT_COLUMNS.index
    key = lambda r: (r[E("benchmark")], r[E("spec_b")], r[E("metric")])
    want = c.set_index(["benchmark", "spec_b", "metric"])
    rows = rendered(d, "effects")                                  # the headline rows, shown first
    assert sorted(map(key, rows)) == sorted(want[want.headline].index)
    for r in rows:
        w = want.loc[key(r)]
        assert all(same(r[E(k)], w[k]) for k in ("a", "b", "delta", "ci_low", "ci_high", "delta_distance")), (r, w)
        assert r[E("test")] == w.test and same(r[E("p")], w.p_test) and same(r[E("p_adj")], w.p_holm_grid), (r, w)
    d.find_element(By.ID, "headline-only").click()                 # every row of the file
    rows = rendered(d, "effects")
    assert len(rows) == len(c) > len(want[want.headline]) and sorted(map(key, rows)) == sorted(want.index)
    assert all(same(r[E("delta")], want.loc[key(r), "delta"]) for r in rows)
    box = d.find_element(By.CSS_SELECTOR, "#effects_wrapper .dt-search input")
    box.send_keys("stereoset")                                     # filter: the search box
    rows = rendered(d, "effects")
    assert len(rows) == (c.benchmark == "stereoset").sum() and {r[E("benchmark")] for r in rows} == {"stereoset"}
    box.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)               # cleared: every row again
    assert len(rendered(d, "effects")) == len(c)
    shown = []
    for _ in range(2):                                             # sort: click the ordering button of Δ, twice
        d.execute_script("document.querySelectorAll('#effects thead tr > *')[arguments[0]].querySelector('.dtcc-button_order')"
                         ".click()", E("delta"))
        shown.append(np.array([num(r[E("delta")]) for r in rendered(d, "effects")]))
    up, down = (lambda x: bool((x[:-1] <= x[1:]).all())), (lambda x: bool((x[:-1] >= x[1:]).all()))
    assert len(shown[0]) == len(c) and len(set(shown[0])) > 1
    assert (up(shown[0]) and down(shown[1])) or (down(shown[0]) and up(shown[1])), shown
    d.save_screenshot(str(page / "browse.png"))
    assert (page / "browse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {page / 'browse.png'}")


def test_the_flipped_items_of_a_comparison_are_exactly_those_of_the_runs(browser, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from dike.archive import benchmark_rows
    d, res = browser, page / "results"
    open_page(d, page / "page.html")
    fl = pd.read_parquet(res / "analysis" / "browse" / "flips.parquet").set_index("benchmark")
    items = lambda rid, b: pd.read_parquet(res / "runs" / rid / b / "items.parquet")
    p = fl.loc["crows_pairs"]
    m = items(p.run_a, "crows_pairs").merge(items(p.run_b, "crows_pairs"), on="item_id", suffixes=("_a", "_b"))
    want = m[m.stereotyped_a != m.stereotyped_b].set_index("item_id")
    assert len(want) == p.n_flips > 0
    Select(d.find_element(By.ID, "pick")).select_by_value(f"{p.run_a}|{p.run_b}")
    head = d.execute_script("return [...document.querySelectorAll('#flipped thead .dt-column-title')].map(c => c.textContent)")
    assert head[:3] == ["item_id", "group", "a → b"] and head[-2:] == ["sent_more", "sent_less"], head
    rows = rendered(d, "flipped")
    assert sorted(r[0] for r in rows) == sorted(want.index)
    for r in rows:
        w = want.loc[r[0]]
        assert r[1] == w.bias_type_a and r[2] == f"{w.stereotyped_a} → {w.stereotyped_b}", (r, w)
        assert same(r[3], w.score_more_a - w.score_less_a) and same(r[4], w.score_more_b - w.score_less_b), (r, w)
        assert r[6:] == [w.sent_more_a, w.sent_less_a], (r, w)
    s = fl.loc["stereoset"]                                        # StereoSet: chosen by a click on its pair's row
    d.execute_script("[...document.querySelectorAll('#pairs tbody tr')].find(r => r.cells[0].textContent === 'stereoset').click()")
    assert d.find_element(By.ID, "pick").get_attribute("value") == f"{s.run_a}|{s.run_b}"
    rows = rendered(d, "flipped")
    assert len(rows) == s.n_flips > 0
    ref = benchmark_rows("stereoset", strict=True)                 # its items store no text: joined from the data
    for r in rows: assert r[6:] == list(ref.loc[r[0], ["context", "stereotype", "anti_stereotype"]]), r
