"""HTML reports opened in a real headless Chromium, and `harness compare`."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from typer.testing import CliRunner

from harness.cli import app

runner = CliRunner()
SECTIONS = ("header", "summary", "budget", "scenes", "plots", "visual")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = runner.invoke(
        app, ["evaluate", "--model", "flowcnrdb_tiny", "--random-init", "--data", str(small_data), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
    pd.DataFrame(
        {
            "iteration": [10, 20],
            "loss": [0.1, 0.05],
            "lr": [3e-4, 1e-7],
            "val_psnr": [20.0, 25.0],
            "val_ssim": [0.5, 0.7],
            "seconds": [1.0, 2.0],
        }
    ).to_csv(out / "train_log.csv", index=False)
    return out


def _no_external_urls(html: str) -> None:
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//""", html, re.I)


def _images_decoded(browser) -> None:
    images = browser.find_elements(By.TAG_NAME, "img")
    assert images
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);"
    )
    assert broken == []


def _first_column(browser) -> list[str]:
    return [
        r.find_elements(By.TAG_NAME, "td")[1].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#scene-table tbody tr")
    ]


def test_run_report_in_chromium(browser, run_dir, tmp_path):
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    _no_external_urls(html)
    browser.get((tmp_path / "report.html").as_uri())
    for section in (*SECTIONS, "training"):
        assert browser.find_element(By.ID, section).is_displayed()
    _images_decoded(browser)
    assert "flowcnrdb_tiny" in browser.find_element(By.ID, "header").text
    assert "41.38" in browser.find_element(By.ID, "summary").text
    assert "fvcore" in browser.find_element(By.ID, "budget").text
    before = _first_column(browser)
    header = browser.find_elements(By.CSS_SELECTOR, "#scene-table th")[1]  # psnr
    header.click()
    ascending = _first_column(browser)
    header.click()
    descending = _first_column(browser)
    assert [float(v) for v in ascending] == sorted(float(v) for v in before)
    assert ascending != before or descending != before  # the click changed the order
    assert descending == ascending[::-1]
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_compare_known_differences(browser, tmp_path, run_dir):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    table = pd.read_csv(other / "metrics.csv")
    table.loc[table["scene"] == "Scene-280", "psnr"] += 2.0
    table.loc[table["scene"] == "Scene-281", "psnr"] -= 1.0
    table.to_csv(other / "metrics.csv", index=False)
    _open_compare(browser, tmp_path, run_dir, other)
    summary = browser.find_element(By.ID, "summary").text
    assert "+0.3333" in summary  # (+2 - 1 + 0) / 3 scenes
    rows = browser.find_elements(By.CSS_SELECTOR, "#summary tr")
    cells = [c.text for c in rows[2].find_elements(By.TAG_NAME, "td")]
    assert cells[-3:] == ["1", "1", "1"]  # wins, losses, ties against the first run


def _open_compare(browser, tmp_path, *runs) -> None:
    """`harness compare RUNS`, opened in Chromium: self-contained, every image decoded."""
    out = tmp_path / "compare.html"
    result = runner.invoke(app, ["compare", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    _no_external_urls(out.read_text())
    browser.get(out.as_uri())
    _images_decoded(browser)


def test_compare_needs_shared_scenes(tmp_path, run_dir):
    assert runner.invoke(app, ["compare", str(run_dir)]).exit_code == 2


def test_compare_shows_where_runs_differ_losslessly_and_1_to_1(browser, tmp_path, run_dir, small_data):
    demosaic = tmp_path / "demosaic"
    assert (
        runner.invoke(
            app, ["evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(demosaic), "--no-report"]
        ).exit_code
        == 0
    )
    _open_compare(browser, tmp_path, demosaic, run_dir)
    crops = browser.find_elements(By.CSS_SELECTOR, "#visual img")
    # 3 scenes x (reference, 2 outputs, ground truth, 2 error maps, 1 difference map)
    assert len(crops) == 3 * 7
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#visual img')).map(i => [i.naturalWidth, i.naturalHeight, i.clientWidth, i.src.slice(0, 22)]);"
    )
    assert all(s[0] == s[2] == 96 and s[1] == 64 and s[3] == "data:image/png;base64," for s in sizes), (
        sizes
    )  # 96 x 64 crops of 64 x 128 scenes, 1:1
    thumbs = browser.find_elements(By.CSS_SELECTOR, "#thumbnails tr")
    assert len(thumbs) == 1 + 3 and len(thumbs[1].find_elements(By.TAG_NAME, "img")) == 2
    captions = browser.find_element(By.ID, "visual").text
    assert "difference: tiny vs demosaic" in captions and "error: demosaic" in captions
