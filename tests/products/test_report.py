"""HTML reports opened in a real headless Chromium, and `harness compare`."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from selenium.webdriver.common.by import By
from typer.testing import CliRunner

from harness.cli import app
from harness.run import RunFolder

runner = CliRunner()
SECTIONS = ("header", "summary", "budget", "scenes", "plots", "visual")


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
    folder = RunFolder(other)  # rewritten through the library, which seals it again (a hand edit is refused)
    folder.write_metrics(table)
    folder.write_summary(folder.read_summary())
    _open_compare(browser, tmp_path, run_dir, other)
    summary = browser.find_element(By.ID, "summary").text
    assert "+0.3333" in summary  # (+2 - 1 + 0) / 3 scenes
    rows = browser.find_elements(By.CSS_SELECTOR, "#summary tr")
    cells = [c.text for c in rows[1].find_elements(By.TAG_NAME, "td")]
    assert cells[:2] == ["1", "other"]  # ranked first by its mean PSNR, though given second
    assert cells[-3:] == ["1", "1", "1"]  # wins, losses, ties against the first run given


def test_compare_of_five_runs_ranks_them_fits_1400_px_and_gives_json(browser, tmp_path, run_dir, small_data):
    runs = [run_dir]
    for name, extra in (("demosaic", []), ("demosaic_round", ["--quantize", "round"]), ("unet", ["--random-init"])):
        model = "unet_baseline" if name == "unet" else "demosaic"
        args = ["evaluate", "--model", model, *extra, "--data", small_data, "--out", tmp_path / name, "--no-report"]
        assert runner.invoke(app, list(map(str, args))).exit_code == 0
        runs.append(tmp_path / name)
    runs.append(tmp_path / "tiny_again")
    shutil.copytree(run_dir, runs[-1])
    result = runner.invoke(app, ["compare", *map(str, runs), "--out", str(tmp_path / "c.html"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    psnr = [r["psnr"] for r in doc["runs"]]
    assert psnr == sorted(psnr, reverse=True) and [r["rank"] for r in doc["runs"]] == [1, 2, 3, 4, 5]
    assert doc["baseline"] == "tiny" and {r["label"] for r in doc["runs"]} == {p.name for p in runs}
    by_label = {r["label"]: r for r in doc["runs"]}
    assert by_label["demosaic"]["parameters"] == 0 and by_label["unet"]["parameters"] > 7_000_000
    assert by_label["unet"]["fvcore_gmacs"] > by_label["tiny"]["fvcore_gmacs"] > 0
    assert all(r["seconds_per_scene"] is not None for r in doc["runs"])
    assert all(r["interval"][0] <= r["psnr"] <= r["interval"][1] for r in doc["runs"])
    assert doc["runs"][-1]["swap_with_next"] is None
    twins = sorted(("tiny", "tiny_again"), key=lambda lb: [r["label"] for r in doc["runs"]].index(lb))
    assert by_label[twins[0]]["swap_with_next"] == 1.0  # identical runs: never separable
    browser.set_window_size(1400, 1000)
    try:
        browser.get((tmp_path / "c.html").as_uri())
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px wider than the window"
    finally:
        browser.set_window_size(1280, 2000)


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


def _figures_fit_their_images(browser) -> None:
    """Every 1:1 crop's figure is as wide as its image: captions wrap under it instead of widening it."""
    widths = browser.execute_script(
        "return Array.from(document.querySelectorAll('.crops figure, .one-to-one figure'))"
        ".map(f => [f.getBoundingClientRect().width, f.querySelector('img').getBoundingClientRect().width]);"
    )
    assert widths and all(figure <= image + 1 for figure, image in widths), widths


def test_every_report_variant_says_only_what_it_knows(browser, tmp_path, run_dir, small_data):
    score = tmp_path / "score"
    assert (
        runner.invoke(app, ["score", str(run_dir / "res"), "--gt", str(small_data), "--out", str(score)]).exit_code == 0
    )
    assert runner.invoke(app, ["report", str(score)]).exit_code == 0
    browser.get((score / "report.html").as_uri())
    header = browser.find_element(By.ID, "header").text
    assert "None" not in header and "no model was run" in header
    assert not browser.find_elements(By.ID, "budget")  # nothing to count, nothing suggested
    _figures_fit_their_images(browser)
    resumed = runner.invoke(
        app,
        ["evaluate", "--model", "flowcnrdb_tiny", "--random-init", "--data", str(small_data), "--out", str(run_dir)],
    )
    assert resumed.exit_code == 0, resumed.output
    browser.get((run_dir / "report.html").as_uri())
    header = browser.find_element(By.ID, "header").text
    assert "3 of 3 scene(s) reused from an earlier invocation" in header and "in all" not in header
    budget = browser.find_element(By.ID, "budget-terms").text
    assert all(term in budget for term in ("native", "uncounted", "conv_same", "Left out here: ptflops_pytorch"))
    _figures_fit_their_images(browser)


def test_a_report_without_ground_truth_names_its_first_and_last_scene(browser, tmp_path, small_data):
    test = tmp_path / "test"
    test.mkdir()
    for path in small_data.glob("Scene-28[0-2]-in-*.tif"):
        shutil.copy(path, test / path.name.replace("Scene-28", "Scene-30"))
    run = tmp_path / "run"
    args = ["evaluate", "--model", "demosaic", "--data", str(test), "--split", "test", "--out", str(run)]
    assert runner.invoke(app, args).exit_code == 0
    browser.get((run / "report.html").as_uri())
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#visual h3")]
    assert titles == ["first: Scene-300", "middle: Scene-301", "last: Scene-302"]


def test_the_histogram_bars_have_edges(run_dir, monkeypatch):
    import harness.report.render as render

    figures = []
    monkeypatch.setattr(render, "png", lambda fig: figures.append(fig) or "data:,")
    folder = RunFolder(run_dir)
    render._plots(folder.scored_metrics(), folder.read_summary(), {})
    histogram = next(f for f in figures if f.axes[0].get_ylabel() == "scenes")
    bars = histogram.axes[0].patches
    assert bars and all(bar.get_linewidth() > 0 and bar.get_edgecolor()[:3] != bar.get_facecolor()[:3] for bar in bars)
