#!/usr/bin/env bash
# The benchmark and the correctness tests on a GPU, from nothing but this repository:
#
#     bash experiments/gpu_bench.sh
#
# 1. Python. Where $PYTHON (default python3) already runs JAX on a GPU, as on a machine whose image
#    carries a CUDA JAX and no network, it is used as it is and nothing is downloaded (jlstm comes from
#    this folder through PYTHONPATH). Otherwise a virtual environment ($VENV, default .venv-gpu) gets
#    `pip install -e .[dev] jax[cuda12]` from PyPI (jax's extra for CUDA 12 wheels; the pip resolver keeps
#    jax and its plugin at one version).
# 2. `jlstm bench` at the default threads (a GPU run has no one-thread table) at four sizes, over every
#    implementation the machine offers except torch on the CPU: cudnn (jax.experimental.rnn.lstm) and
#    torch_cuda (only where torch.cuda.is_available()) included; gradients are checked equal first.
# 3. pytest -q tests/test_core.py tests/test_sequence.py, on the GPU.
# Then it prints the table (runs/gpu_bench/bench.md) and the tests' result. Each step has a time limit,
# so the whole stays under 8 minutes. Exit status: 0 if the benchmark and the tests passed.
#
# Overrides: PYTHON, VENV, GPU_BENCH_OUT (runs/gpu_bench), GPU_BENCH_SIZES, GPU_BENCH_ROUNDS (20),
# GPU_BENCH_TESTS (pytest's arguments), and GPU_BENCH_REQUIRE_GPU=0 to run on a CPU (to check the script
# itself on a machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

start=$SECONDS
budget=470  # seconds, for everything: under 8 minutes with the setup's start
left() { echo $((budget - (SECONDS - start))); }
limit() { local n=$(( $(left) - $1 )); echo $(( n > $2 ? n : $2 )); }  # time left less $1 s, at least $2 s

out=${GPU_BENCH_OUT:-runs/gpu_bench}
sizes=${GPU_BENCH_SIZES:-"100,32,128,128;200,64,256,256;1000,8,64,64;50,128,512,512"}
rounds=${GPU_BENCH_ROUNDS:-20}
want_gpu=${GPU_BENCH_REQUIRE_GPU:-1}
tests=${GPU_BENCH_TESTS:-"tests/test_core.py tests/test_sequence.py"}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and torch share the GPU in one process
mkdir -p "$out"

backend() { "$1" -c 'import jax; print(jax.default_backend())' 2>/dev/null; }

# 1. A Python whose JAX runs on the GPU.
if [[ $(backend "$py") != gpu && $want_gpu != 0 ]]; then
  venv=${VENV:-.venv-gpu}
  echo "== $py has no GPU JAX: installing .[dev] and jax[cuda12] into $venv (needs PyPI)"
  "$py" -m venv "$venv" || exit 1
  py="$venv/bin/python"
  timeout "$(limit 240 60)" "$py" -m pip install -q -e ".[dev]" "jax[cuda12]" || { echo "install failed"; exit 1; }
fi
b=$(backend "$py")
echo "== python: $py; jax $("$py" -c 'import jax; print(jax.__version__)' 2>/dev/null); backend: ${b:-none}"
if [[ $b != gpu && $want_gpu != 0 ]]; then
  echo "JAX does not run on a GPU here (backend: ${b:-none}); set GPU_BENCH_REQUIRE_GPU=0 to run on a CPU."
  exit 1
fi
"$py" -c 'import torch; print("torch", torch.__version__, "cuda:", torch.cuda.is_available())' 2>/dev/null \
  || echo "torch: not installed (no torch rows)"

# 2. The benchmark: what this machine offers, less torch on the CPU (not a GPU figure, and slow at 512).
impls=$("$py" -c 'import jax; from jlstm.app.bench import available_impls
gpu = jax.default_backend() == "gpu"
print(",".join(n for n in available_impls() if not (gpu and n == "torch")))') || exit 1
echo "== bench: $impls at $sizes, $rounds rounds ($(left) s left)"
timeout "$(limit 150 60)" "$py" -m jlstm.app.cli bench --threads default --sizes "$sizes" \
  --impls "$impls" --rounds "$rounds" --out "$out" > "$out/bench.log" 2>&1
bench_rc=$?

# 3. The correctness tests on the same device.
echo "== tests ($(left) s left)"
# shellcheck disable=SC2086  # the test selection is a list of words
timeout "$(limit 5 30)" "$py" -m pytest -q $tests > "$out/tests.log" 2>&1
tests_rc=$?

echo
if [[ $bench_rc == 0 ]]; then
  cat "$out/bench.md"
else
  echo "bench FAILED (exit status $bench_rc$([[ $bench_rc == 124 ]] && echo ', out of time')); its log:"
  tail -n 30 "$out/bench.log"
fi
echo
echo "tests ($tests, backend $b): $(tail -n 1 "$out/tests.log")"
if [[ $tests_rc != 0 ]]; then
  [[ $tests_rc == 124 ]] && echo "tests: out of time"
  grep -E '^(FAILED|ERROR)' "$out/tests.log" | head -n 20
fi
echo "total $((SECONDS - start)) s; logs in $out/"
[[ $bench_rc == 0 && $tests_rc == 0 ]]
