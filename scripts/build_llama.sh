#!/usr/bin/env bash
# Portable llama.cpp builds: llama-cpp-python (the Python bindings + llama_cpp.server) and the
# C++ llama-server / llama-quantize, from the llama.cpp sources vendored in the llama-cpp-python
# sdist. Never -march=native: the instruction sets are chosen here from /proc/cpuinfo AND a probe
# that runs each one (a hypervisor can list a feature it refuses: AMX on some Xeon guests dies with
# SIGILL at the first decode). AMX is always off.
#
#   scripts/build_llama.sh [--python PY] [--bin-dir DIR] [--build-dir DIR] [--what python|cpp|all]
#                          [--flags] [--force]
#
#   --python     interpreter of the venv to install llama-cpp-python into (default .venv/bin/python)
#   --bin-dir    where llama-server and llama-quantize go (default: the --python venv's bin/)
#   --build-dir  sources, build trees and the portable wheel (default $RRLIB_ENGINE_BUILD_DIR, else
#                ~/.cache/rrlib/engines: outside the clone, so a new clone on the same machine reuses a
#                build; every build is keyed by the llama-cpp-python version and the probed flags, so
#                a build made for other instruction sets is never reused)
#   --what       python (bindings only), cpp (C++ binaries only) or all (default)
#   --flags      print the CMake feature flags chosen for this machine and exit
#   --force      rebuild even when a build with the same version and flags is installed
#
# Env: LLAMA_CPP_PYTHON_VERSION (pinned below), JOBS (default 2), NICE (default 10).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
JOBS="${JOBS:-2}"
NICE="${NICE:-10}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
BIN_DIR=""
BUILD_DIR="${RRLIB_ENGINE_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rrlib/engines}"
WHAT=all
FORCE=0
ONLY_FLAGS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY="$2"; shift 2 ;;
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --build-dir) BUILD_DIR="$2"; shift 2 ;;
    --what) WHAT="$2"; shift 2 ;;
    --flags) ONLY_FLAGS=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build_llama.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$WHAT" in python|cpp|all) ;; *) echo "build_llama.sh: --what must be python, cpp or all" >&2; exit 2 ;; esac
CC="${CC:-$(command -v cc || command -v gcc || true)}"

# ------------------------------------------------------------------ instruction-set selection
# feature name in /proc/cpuinfo | gcc flags | a C body that executes an instruction of it
probe() {  # probe NAME "GCC FLAGS" "INCLUDES+BODY" -> 0 when the instruction runs here
  local name="$1" cflags="$2" body="$3" dir
  dir="$(mktemp -d)"
  printf '#include <immintrin.h>\n#include <stdio.h>\nvolatile int sink;\nint main(void){\n%s\nreturn 0;}\n' \
    "$body" > "$dir/p.c"
  if ! "$CC" -O0 $cflags "$dir/p.c" -o "$dir/p" 2>/dev/null; then rm -rf "$dir"; return 1; fi
  # a refused instruction kills the probe with SIGILL (exit 132): that feature stays off
  if ( "$dir/p" ) >/dev/null 2>&1; then rm -rf "$dir"; return 0; fi
  echo "build_llama.sh: $name is listed in /proc/cpuinfo but does not run here; building without it" >&2
  rm -rf "$dir"; return 1
}

cpu_flags=" $(grep -m1 "^flags" "${BUILD_LLAMA_CPUINFO:-/proc/cpuinfo}" 2>/dev/null | cut -d: -f2) "
has() { for f in "$@"; do case "$cpu_flags" in *" $f "*) ;; *) return 1 ;; esac; done; }
on_if() {  # on_if CMAKE_OPTION "cpuinfo flags" "gcc flags" "probe body"
  if has $2 && [ -n "$CC" ] && probe "$2" "$3" "$4"; then echo "-D$1=ON"; else echo "-D$1=OFF"; fi
}

feature_flags() {
  local v='volatile float f[16] = {1}; volatile int i[16] = {1};'
  local out="-DGGML_NATIVE=OFF"
  out+=" $(on_if GGML_SSE42 sse4_2 -msse4.2 "$v sink = _mm_crc32_u32(i[0], i[1]);")"
  out+=" $(on_if GGML_AVX avx -mavx "$v __m256 a = _mm256_loadu_ps((float*)f); a = _mm256_add_ps(a, a); sink = (int)_mm256_cvtss_f32(a);")"
  out+=" $(on_if GGML_AVX2 avx2 -mavx2 "$v __m256i a = _mm256_loadu_si256((__m256i*)i); a = _mm256_add_epi32(a, a); sink = _mm256_extract_epi32(a, 0);")"
  out+=" $(on_if GGML_FMA fma '-mavx -mfma' "$v __m256 a = _mm256_loadu_ps((float*)f); a = _mm256_fmadd_ps(a, a, a); sink = (int)_mm256_cvtss_f32(a);")"
  out+=" $(on_if GGML_F16C f16c '-mavx -mf16c' "$v __m128i h = _mm_loadu_si128((__m128i*)i); __m256 a = _mm256_cvtph_ps(h); sink = (int)_mm256_cvtss_f32(a);")"
  out+=" $(on_if GGML_BMI2 bmi2 -mbmi2 "$v sink = (int)_pdep_u64((unsigned long long)i[0], 0xffull);")"
  out+=" $(on_if GGML_AVX_VNNI 'avx_vnni avx2' '-mavx2 -mavxvnni' "$v __m256i a = _mm256_loadu_si256((__m256i*)i); a = _mm256_dpbusd_avx_epi32(a, a, a); sink = _mm256_extract_epi32(a, 0);")"
  local a512='-mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw'
  local avx512
  avx512="$(on_if GGML_AVX512 'avx512f avx512cd avx512vl avx512dq avx512bw' "$a512" "$v __m512i a = _mm512_loadu_si512((void*)i); a = _mm512_add_epi16(a, a); __m512 b = _mm512_loadu_ps((float*)f); b = _mm512_add_ps(b, b); sink = _mm512_reduce_add_epi32(a) + (int)_mm512_reduce_add_ps(b);")"
  out+=" $avx512"
  if [ "$avx512" = "-DGGML_AVX512=ON" ]; then
    out+=" $(on_if GGML_AVX512_VBMI avx512vbmi "$a512 -mavx512vbmi" "$v __m512i a = _mm512_loadu_si512((void*)i); a = _mm512_permutexvar_epi8(a, a); sink = _mm512_reduce_add_epi32(a);")"
    out+=" $(on_if GGML_AVX512_VNNI avx512_vnni "$a512 -mavx512vnni" "$v __m512i a = _mm512_loadu_si512((void*)i); a = _mm512_dpbusd_epi32(a, a, a); sink = _mm512_reduce_add_epi32(a);")"
    out+=" $(on_if GGML_AVX512_BF16 avx512_bf16 "$a512 -mavx512bf16" "$v __m512 b = _mm512_loadu_ps((float*)f); __m512bh h = _mm512_cvtne2ps_pbh(b, b); b = _mm512_dpbf16_ps(b, h, h); sink = (int)_mm512_reduce_add_ps(b);")"
  else
    out+=" -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF"
  fi
  # AMX needs a permission request to the kernel and is refused by some hypervisors that list it
  out+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  echo "$out"
}

FLAGS="$(feature_flags)"
if [ "$ONLY_FLAGS" = 1 ]; then echo "$FLAGS"; exit 0; fi
TAG="$(printf '%s %s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-12)"
echo "build_llama.sh: llama-cpp-python $VERSION, flags: $FLAGS (build tag $TAG)"
mkdir -p "$BUILD_DIR"
BUILD_DIR="$(cd "$BUILD_DIR" && pwd)"

# ------------------------------------------------------------------ sources (PyPI sdist)
sources() {
  local src="$BUILD_DIR/src/llama_cpp_python-$VERSION"
  if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
    mkdir -p "$BUILD_DIR/src"
    # the sdist from PyPI (works offline through the registry mirror); never a binary wheel
    [ -f "$BUILD_DIR/src/llama_cpp_python-$VERSION.tar.gz" ] || \
      PIP_NO_CACHE_DIR=1 "$PY" -m pip download -q --no-binary :all: --no-deps \
        "llama-cpp-python==$VERSION" -d "$BUILD_DIR/src" >&2
    tar -xzf "$BUILD_DIR/src/llama_cpp_python-$VERSION.tar.gz" -C "$BUILD_DIR/src"
  fi
  echo "$src"
}

# ------------------------------------------------------------------ llama-cpp-python
build_python() {
  local venv stamp wheel_dir wheel
  venv="$("$PY" -c 'import sys; print(sys.prefix)')"
  stamp="$venv/.llama-cpp-python-portable"
  if [ "$FORCE" = 0 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$TAG" ] && "$PY" -c 'import llama_cpp' 2>/dev/null; then
    echo "build_llama.sh: llama-cpp-python $VERSION (portable, $TAG) already installed in $venv"
    return
  fi
  wheel_dir="$BUILD_DIR/wheels-$TAG"
  wheel="$(ls "$wheel_dir"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -1 || true)"
  if [ "$FORCE" = 1 ] || [ -z "$wheel" ]; then
    rm -rf "$wheel_dir"; mkdir -p "$wheel_dir"
    local src; src="$(sources)"
    echo "build_llama.sh: building llama-cpp-python $VERSION from source (a few minutes on 2 cores)"
    # --no-binary + no pip cache: never a prebuilt or previously cached (possibly native) wheel
    CMAKE_ARGS="$FLAGS -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" FORCE_CMAKE=1 PIP_NO_CACHE_DIR=1 \
      nice -n "$NICE" "$PY" -m pip wheel -q --no-deps --no-binary llama-cpp-python -w "$wheel_dir" "$src"
    wheel="$(ls "$wheel_dir"/llama_cpp_python-"$VERSION"-*.whl | head -1)"
  fi
  PIP_NO_CACHE_DIR=1 "$PY" -m pip install -q --force-reinstall --no-deps "$wheel"
  PIP_NO_CACHE_DIR=1 "$PY" -m pip install -q "$wheel[server]"  # the server's own dependencies
  "$PY" -c 'import llama_cpp, llama_cpp.server' 
  echo "$TAG" > "$stamp"
  printf '%s\n' "$FLAGS" > "$venv/.llama-cpp-python-flags"
  echo "build_llama.sh: installed llama-cpp-python $VERSION into $venv"
}

# ------------------------------------------------------------------ C++ llama-server, llama-quantize
build_cpp() {
  local bin="${BIN_DIR:-$("$PY" -c 'import sys, os; print(os.path.join(sys.prefix, "bin"))')}"
  mkdir -p "$bin"
  if [ "$FORCE" = 0 ] && [ -x "$bin/llama-server" ] && [ "$(cat "$bin/.llama-server-portable" 2>/dev/null)" = "$TAG" ]; then
    echo "build_llama.sh: llama-server (portable, $TAG) already in $bin"
    return
  fi
  local src build gen=()
  build="$BUILD_DIR/cpp-$TAG"
  if [ "$FORCE" = 0 ] && [ -x "$build/bin/llama-server" ] && [ -x "$build/bin/llama-quantize" ]; then
    install -m 755 "$build/bin/llama-server" "$build/bin/llama-quantize" "$bin/"  # built before for these flags
    echo "$TAG" > "$bin/.llama-server-portable"
    printf '%s\n' "$FLAGS" > "$bin/.llama-server-flags"
    echo "build_llama.sh: installed the earlier portable build ($TAG) of llama-server into $bin"
    return
  fi
  src="$(sources)/vendor/llama.cpp"
  command -v ninja >/dev/null && gen=(-G Ninja)
  echo "build_llama.sh: building llama-server and llama-quantize (several minutes on 2 cores)"
  nice -n "$NICE" cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release $FLAGS \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_NUMBER=0 >"$BUILD_DIR/cpp-$TAG.configure.log"
  nice -n "$NICE" cmake --build "$build" --target llama-server llama-quantize -j "$JOBS" \
    >"$BUILD_DIR/cpp-$TAG.build.log" || { tail -30 "$BUILD_DIR/cpp-$TAG.build.log" >&2; exit 1; }
  install -m 755 "$build/bin/llama-server" "$build/bin/llama-quantize" "$bin/"
  "$bin/llama-server" --version >/dev/null 2>&1 || { echo "build_llama.sh: $bin/llama-server does not run" >&2; exit 1; }
  echo "$TAG" > "$bin/.llama-server-portable"
  printf '%s\n' "$FLAGS" > "$bin/.llama-server-flags"
  echo "build_llama.sh: installed llama-server and llama-quantize into $bin"
}

case "$WHAT" in
  python) build_python ;;
  cpp) build_cpp ;;
  all) build_python; build_cpp ;;
esac
