"""Size and load time of a report for 20 full-size scenes (run by hand; goals: < 25 MB, < 2 s).

    python benchmarks/report_size.py [--scenes 20]

Synthesises 20 validation scenes at 768 x 1536, evaluates the parameter-free
`demosaic` model on them, renders the report and opens it in headless Chromium.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from harness.data.synth import SynthConfig, synthesize
from harness.evaluate import EvalConfig, evaluate
from harness.report.render import render_run_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(Path(tmp) / "data", SynthConfig(train_scenes=0, val_scenes=args.scenes, height=768, width=1536))
        evaluate(EvalConfig(model="demosaic", data=str(data), out=str(Path(tmp) / "run")))
        t0 = time.perf_counter()
        report = render_run_report(Path(tmp) / "run")
        render_s = time.perf_counter() - t0
        size_mb = report.stat().st_size / 1e6
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
        try:
            t0 = time.perf_counter()
            driver.get(report.as_uri())
            driver.execute_script("return Array.from(document.images).every(i => i.complete)")
            load_s = time.perf_counter() - t0
        finally:
            driver.quit()
    print(f"{args.scenes} full-size scenes: report {size_mb:.2f} MB (goal < 25), rendered in {render_s:.1f} s, "
          f"opened in {load_s:.2f} s (goal < 2)")


if __name__ == "__main__":
    main()
