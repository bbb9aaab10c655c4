"""Size and load time of a run report and of a 3-run comparison on 20 full-size scenes (run by hand;
goals: each < 25 MB, opened in < 2 s).

    python benchmarks/report_size.py [--scenes 20]

Synthesises 20 validation scenes at 768 x 1536, evaluates three runs on them (the parameter-free `demosaic`
quantised by floor and by rounding, and the bundled `flowcnrdb_tiny`), renders the report of one and the
comparison of all three, and opens both in headless Chromium.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from harness.data.synth import synthesize
from harness.evaluate import evaluate
from harness.options import EvalConfig, SynthConfig
from harness.report.render import render_compare, render_run_report


def _open_seconds(page: Path) -> float:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    try:
        t0 = time.perf_counter()
        driver.get(page.as_uri())
        assert driver.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        return time.perf_counter() - t0
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = synthesize(root / "data", SynthConfig(train_scenes=0, val_scenes=args.scenes, height=768, width=1536))
        runs = [root / "floor", root / "round", root / "tiny"]
        evaluate(EvalConfig(model="demosaic", data=data, out=runs[0]))
        evaluate(EvalConfig(model="demosaic", data=data, out=runs[1], quantize="round"))
        evaluate(EvalConfig(model="flowcnrdb_tiny", data=data, out=runs[2]))
        t0 = time.perf_counter()
        report = render_run_report(runs[2], budget=False)
        report_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compare = render_compare(runs, root / "compare.html")
        compare_s = time.perf_counter() - t0
        for label, page, seconds in (("run report", report, report_s), ("3-run comparison", compare, compare_s)):
            print(
                f"{args.scenes} full-size scenes, {label}: {page.stat().st_size / 1e6:.2f} MB (goal < 25), "
                f"rendered in {seconds:.1f} s, opened in {_open_seconds(page):.2f} s (goal < 2)"
            )


if __name__ == "__main__":
    main()
