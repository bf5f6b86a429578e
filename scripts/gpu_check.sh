#!/usr/bin/env bash
# The GPU check (issue 22): CUDA torch, bitsandbytes 4/8-bit loads of the embedded student, LoRA
# steps in bf16/fp16, Yes/No scoring on the GPU against the CPU, the smoke preset's 01-07 on the GPU,
# and vLLM serving the embedded teacher where it is installed. One PASS/FAIL/SKIP line per step with
# its figure (scripts/gpu_check.py says what each step measures). Capped at 8 minutes.
#
#   scripts/gpu_check.sh              # on a CUDA machine, from the project root or anywhere
#   scripts/gpu_check.sh --dry-run    # the same steps on the CPU with the tiny student (tested)
#   PYTHON=/path/to/python scripts/gpu_check.sh --only torch,yes-no
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "FAIL  setup      no interpreter at $PY: run \`make setup\` (CUDA: see README, Running a paper preset on a GPU machine) or set PYTHON"
  exit 1
fi
timeout --signal=INT --kill-after=20 "${GPU_CHECK_LIMIT_S:-470}" "$PY" scripts/gpu_check.py "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ] || [ "$rc" -eq 137 ]; then
  echo "FAIL  time       the check ran past ${GPU_CHECK_LIMIT_S:-470} s (8 minutes is its budget on one GPU)"
  exit 1
fi
exit "$rc"
