"""Time to synthesise 20 scenes at 768 x 1536 (run by hand; goal: under 60 s).

python benchmarks/synth_speed.py [--scenes 20] [--size 768x1536]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness.challenge import parse_size
from harness.data.synth import synthesize
from harness.options import SynthConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--size", default="768x1536")
    args = parser.parse_args()
    h, w = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesize(Path(tmp) / "data", SynthConfig(train_scenes=0, val_scenes=args.scenes, height=h, width=w))
        seconds = time.perf_counter() - t0
    print(f"{args.scenes} scenes at {h}x{w}: {seconds:.1f} s ({seconds / args.scenes:.2f} s/scene; goal: under 60 s)")


if __name__ == "__main__":
    main()
