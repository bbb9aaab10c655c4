#!/bin/bash
# FlowCNRDB training on a CUDA GPU by the published protocol (batch 10, AMP, AdamW, cosine over 224,000 iterations)
# for 40 iterations, then a resume to 45: seconds per iteration and the GPU's peak memory (nvidia-smi, every 0.5 s).
#
#     bash benchmarks/train_gpu.sh [CROP] [OUT]      (CROP: 224 on the embedded data, whose scenes are 256x512;
#                                                     256, the published crop, on the RawFusion data with --data)
set -o pipefail
crop=${1:-224}
out=${2:-$(mktemp -d)/train}
log=$(mktemp)
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$log" &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT
common=(--model flowcnrdb --device cuda --crop "$crop" --iters 224000 --val-every 20 --log-every 5 --workers 8 --out "$out")
python3 -m harness.cli train "${common[@]}" --stop-after 40 2>&1 | tail -4 || exit 1
python3 -m harness.cli train "${common[@]}" --stop-after 45 --resume 2>&1 | tail -2 || exit 1
kill $smi
echo "peak GPU memory used: $(sort -n "$log" | tail -1) MiB"
python3 - "$out/train_log.csv" <<'PY'
import sys

import pandas as pd

t = pd.read_csv(sys.argv[1]).set_index("iteration")["seconds"]
per = [(t[15] - t[5]) / 10, (t[35] - t[25]) / 10]  # no validation inside either span
print(f"seconds per iteration: {per[0]:.3f} (iterations 5-15), {per[1]:.3f} (25-35); "
      f"224,000 iterations: {224000 * min(per) / 3600:.1f} h")
PY
