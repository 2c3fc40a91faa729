"""The HTML leaderboard as a reader sees it, in a headless Debian chromium (via selenium).

Installs Debian's ``chromium`` and ``chromium-driver`` if they are missing (needs root and
apt, as the cluster tier installs slurm); skipped where neither the browser nor apt is
there. The browser runs offline with a fresh profile; the page must need no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_eval_leaderboard import write_scores
from ume.eval.aggregate import REFERENCE_DIR, load_scores
from ume.report.leaderboard import build_leaderboard

pytestmark = pytest.mark.integration

PACKAGES = ("chromium", "chromium-driver")
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _install() -> None:
    if Path(CHROMIUM).exists() and Path(DRIVER).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("no chromium/chromedriver, and no root apt-get to install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    if subprocess.run(apt, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
        subprocess.run(apt, env=env, check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _install()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1600,1200",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    """Run 'r': main = Embed-RL-2B's published per-task numbers with 2 items of ImageNet-1K
    skipped (partial); raw = 2 tasks, OK-VQA missing, N24News half downloaded."""
    tmp = tmp_path_factory.mktemp("lb")
    ev = tmp / "r" / "eval"
    published = load_scores(REFERENCE_DIR / "mmeb_v2_embed-rl-2b.json")
    write_scores(ev / "main" / "mmeb", "mmeb", published)
    rec = ev / "main" / "mmeb" / "ImageNet-1K.score.json"
    rec.write_text(json.dumps(json.loads(rec.read_text()) | {"num_skipped": 2}))
    write_scores(ev / "raw" / "mmeb", "mmeb", dict(list(published.items())[:2]), missing=["OK-VQA"])
    (ev / "raw" / "mmeb" / "N24News.score.json").write_text(
        json.dumps({"status": "incomplete", "reason": "task N24News incomplete (half downloaded)"})
    )
    build_leaderboard({"r": ev}, ["mmeb", "uvrb"], tmp / "out")
    return tmp / "out" / "leaderboard.html"


def _rows(driver, table: str) -> list:
    return driver.find_elements("css selector", f"#{table} tbody tr")


def _column(driver, table: str, name: str) -> int:
    heads = [
        h.text.strip("▲▼ ") for h in driver.find_elements("css selector", f"#{table} thead th")
    ]
    return heads.index(name)


def _cell(driver, table: str, label: str, column: str):
    j = _column(driver, table, column)
    for tr in _rows(driver, table):
        cells = tr.find_elements("css selector", "td")
        if cells[0].text == label:
            return cells[j]
    raise AssertionError(f"no row {label!r} in {table}")


def _number(text: str) -> float | None:
    head = text.split()[0] if text.split() else ""
    try:
        return float(head)
    except ValueError:
        return None


def test_what_a_reader_sees(browser, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.find_element("tag name", "h1").text == "Leaderboard"
    # self-contained: nothing to fetch
    external = browser.execute_script(
        "return document.querySelectorAll('[src^=http], link[href^=http]').length"
    )
    assert external == 0

    # this project's rows are highlighted, published ones are not
    ours = _cell(browser, "mmeb-categories", "r / main", "model")
    theirs = _cell(browser, "mmeb-categories", "GME-7B", "model")
    assert ours.value_of_css_property("background-color") != theirs.value_of_css_property(
        "background-color"
    )

    # the best value per column is marked, among comparable rows only
    best_all = browser.find_elements(
        "css selector",
        f"#mmeb-categories tbody td.best:nth-child({_column(browser, 'mmeb-categories', 'All') + 1})",
    )
    assert [c.text for c in best_all] == ["68.1"]  # Embed-RL-4B; GME-7B (58.8) is old split
    assert best_all[0].value_of_css_property("font-weight") in ("700", "bold")

    # errata inline: the recomputed value and what the paper prints
    image = _cell(browser, "mmeb-categories", "Embed-RL-4B", "Image").text
    assert image.startswith("71.2") and "printed 70.1" in image

    # split marks inline, and an overall beside that the split does not touch
    ood = _cell(browser, "mmeb-categories", "GME-7B", "OOD")
    assert "old split" in ood.text and "nc" in ood.get_attribute("class")
    assert "split" not in _cell(browser, "mmeb-categories", "GME-7B", "All w/o OOD").text
    assert _cell(browser, "mmeb-categories", "r / main", "OOD split").text == "fixed"

    # partial and incomplete tasks, as the reader sees them
    assert "2 skipped" in _cell(browser, "mmeb-tasks", "ImageNet-1K", "r / main").text
    assert "partial" in _cell(browser, "mmeb-categories", "r / main", "I-CLS").text
    assert _cell(browser, "mmeb-tasks", "N24News", "r / raw").text == "incomplete"
    assert _cell(browser, "mmeb-tasks", "OK-VQA", "r / raw").text == "missing"
    tasks_state = _cell(browser, "mmeb-categories", "r / raw", "tasks").text
    assert "INCOMPLETE" in tasks_state and "1 incomplete" in tasks_state

    # sorting by a column: a click sorts descending, a second click ascending, blanks last
    j = _column(browser, "mmeb-categories", "All w/o OOD")
    header = browser.find_elements("css selector", "#mmeb-categories thead th")[j]
    for click, order in ((1, "desc"), (2, "asc")):
        header.click()
        values = [_number(tr.find_elements("css selector", "td")[j].text)
                  for tr in _rows(browser, "mmeb-categories")]  # fmt: skip
        have = [v for v in values if v is not None]
        assert have == sorted(have, reverse=order == "desc"), (click, values)
        assert values[: len(have)] == have  # rows without a value come last
        assert ("sorted-" + order) in header.get_attribute("class")
    browser.find_elements("css selector", "#mmeb-categories thead th")[0].click()
    labels = [
        tr.find_element("css selector", "td").text for tr in _rows(browser, "mmeb-categories")
    ]
    assert labels == sorted(labels, key=str.lower, reverse=True)  # text: alphabetical
