#!/usr/bin/env bash
# Fresh-machine set-up time of `make demo`'s build steps: a new clone, a new venv, an empty cache
# (HOME and XDG_CACHE_HOME point at an empty folder, so no pip cache and no kept llama.cpp build) and
# PIP_NO_CACHE_DIR=1. The demo run itself is not timed: only what it builds first.
#
#   scripts/benchmark_setup.sh                     # after: `make setup server-cpp` (what `make demo` builds)
#   scripts/benchmark_setup.sh setup server        # before: the bindings and the C++ server both
#   KEEP=1 scripts/benchmark_setup.sh ...          # keep the scratch folder
#
# Prints one line per make target and the total, in seconds. Run it on a quiet machine (~15-20 min).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(setup server-cpp)
SCRATCH="$(mktemp -d /tmp/rrlib-setup-bench.XXXXXX)"
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$SCRATCH"' EXIT
git clone -q "$ROOT" "$SCRATCH/clone"
mkdir -p "$SCRATCH/home/.config"
# resolved before HOME moves: pyenv shims and the pip configuration (index, certificates) live under it
PYTHON_BIN="$(command -v python3.11 >/dev/null && python3.11 -c 'import sys; print(sys.executable)' || python3 -c 'import sys; print(sys.executable)')"
[ -d "$HOME/.config/pip" ] && cp -r "$HOME/.config/pip" "$SCRATCH/home/.config/"
export HOME="$SCRATCH/home" XDG_CACHE_HOME="$SCRATCH/home/.cache" PIP_NO_CACHE_DIR=1
unset RRLIB_ENGINE_BUILD_DIR
total=0
for target in "${TARGETS[@]}"; do
  start=$(date +%s)
  make -C "$SCRATCH/clone" PYTHON="$PYTHON_BIN" "$target" >"$SCRATCH/make-$target.log" 2>&1 || { echo "make $target failed:"; tail -20 "$SCRATCH/make-$target.log"; exit 1; }
  seconds=$(( $(date +%s) - start ))
  total=$(( total + seconds ))
  echo "make $target: $seconds s"
done
echo "total: $total s ($(( total / 60 )) min $(( total % 60 )) s) for: make ${TARGETS[*]}"
