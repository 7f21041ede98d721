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
# 2. The tests whose numerics a GPU changes (TF32 products, its own tanh and summation orders, cuDNN,
#    its memory plans), on the GPU, before the benchmark: the files below, most important first, each
#    only where its imports are installed (a file needing hypothesis or chex is skipped, and the script
#    says so); with pytest-xdist 4 workers (compiling is most of the time), without it one process, in
#    this order.
#    A time limit stops pytest with SIGINT, so the results so far are kept; files not reached are named.
# 3. `jlstm bench` at the default threads (a GPU run has no one-thread table) at four sizes, over every
#    implementation the machine offers except torch on the CPU: cudnn (jax.experimental.rnn.lstm) and
#    torch_cuda (only where torch.cuda.is_available()) included; gradients are checked equal first.
# Then it prints the table (runs/gpu_bench/bench.md) and the tests' result per file (the log, a JUnit XML
# and the slowest tests are in runs/gpu_bench/). Each step has a time limit, so the whole stays under
# about 8 minutes. Exit status: 0 if the benchmark and the tests passed (no pytest: not passed).
#
# Overrides: PYTHON, VENV, GPU_BENCH_OUT (runs/gpu_bench), GPU_BENCH_SIZES, GPU_BENCH_ROUNDS (20),
# GPU_BENCH_TESTS (the test files or pytest arguments, instead of the selection below),
# GPU_BENCH_TEST_S (240, the tests' time limit), GPU_BENCH_TEST_WORKERS (4), GPU_BENCH_BUDGET (500 s in
# all), and GPU_BENCH_REQUIRE_GPU=0 to run on a CPU (to check the script itself on a machine without a
# GPU).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

start=$SECONDS
budget=${GPU_BENCH_BUDGET:-500}  # seconds, for everything: about 8 minutes with the setup's start
left() { echo $((budget - (SECONDS - start))); }
limit() { local n=$(( $(left) - $1 )); echo $(( n > $2 ? n : $2 )); }  # time left less $1 s, at least $2 s

out=${GPU_BENCH_OUT:-runs/gpu_bench}
sizes=${GPU_BENCH_SIZES:-"100,32,128,128;200,64,256,256;1000,8,64,64;50,128,512,512"}
rounds=${GPU_BENCH_ROUNDS:-20}
want_gpu=${GPU_BENCH_REQUIRE_GPU:-1}
# Most important first: the float32-vs-float64 and low-precision bounds, then the float32 comparisons
# with Keras, the identities (float64, but on the GPU's kernels), the transformations, memory plans.
selection="tests/test_core.py tests/test_lowp.py tests/test_numerics.py tests/test_nn_keras.py
  tests/test_sequence.py tests/test_cells.py tests/test_remat.py tests/test_stacked_fused.py
  tests/test_transformations.py tests/test_memory.py tests/test_interop.py tests/test_cells_anchors.py"
tests=${GPU_BENCH_TESTS:-$selection}
test_s=${GPU_BENCH_TEST_S:-240}
workers=${GPU_BENCH_TEST_WORKERS:-4}
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

# 2. The tests on the GPU, before the benchmark.
echo "== tests ($(left) s left)"
tests_log="$out/tests.log"
tests_rc=0
if ! "$py" -c 'import pytest' 2>/dev/null; then
  echo "tests: NOT RUN, pytest is not installed for $py (and this machine may have no network to get it)" \
    | tee "$tests_log"
  tests_rc=not_run
else
  # Which files can run here: a file whose top-level imports are not all installed is skipped, by name.
  # shellcheck disable=SC2086  # the test selection is a list of words
  runnable=$("$py" - $tests <<'PY' 2>&1 | tee "$tests_log"
import ast, importlib.util, sys
local = {"jlstm", "helpers", "comparisons", "conftest"}
keep = []
for arg in sys.argv[1:]:
    path = arg.split("::")[0]
    if arg.startswith("-") or not path.endswith(".py"):
        keep.append(arg)
        continue
    try:
        tree = ast.parse(open(path).read())
    except OSError as e:
        print(f"tests: skipped {arg}: {e}", file=sys.stderr)
        continue
    names = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in tree.body
              if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    missing = sorted(m for m in names - local - set(sys.stdlib_module_names)
                     if importlib.util.find_spec(m) is None)
    if missing:
        print(f"tests: skipped {arg}: needs {', '.join(missing)} (not installed for {sys.executable})",
              file=sys.stderr)
    else:
        keep.append(arg)
print("RUN", *keep)
PY
  )
  runnable=$(grep '^RUN' <<<"$runnable" | cut -c5-)
  grep '^tests: skipped' "$tests_log"
  args=(-q -rfE --durations=15 --junitxml "$out/tests.xml")
  if "$py" -c 'import xdist' 2>/dev/null; then
    args+=(-n "$workers")
  else
    echo "tests: pytest-xdist is not installed: one process" | tee -a "$tests_log"
  fi
  if [[ -z $runnable ]]; then
    echo "tests: NOT RUN, none of the selected files can run here (see $tests_log)" | tee -a "$tests_log"
    tests_rc=not_run
  else
    t=$(limit 180 60); (( t > test_s )) && t=$test_s  # leave the benchmark 3 minutes
    echo "tests: $runnable (limit $t s)" | tee -a "$tests_log"
    # SIGINT at the limit: pytest stops, prints what it has and writes the XML.
    rm -f "$out/tests.xml"
    # shellcheck disable=SC2086
    timeout -s INT -k 20 "$t" "$py" -m pytest "${args[@]}" $runnable >> "$tests_log" 2>&1
    tests_rc=$?
  fi
fi

# 3. The benchmark: what this machine offers, less torch on the CPU (not a GPU figure, and slow at 512).
if impls=$("$py" -c 'import jax; from jlstm.app.bench import available_impls
gpu = jax.default_backend() == "gpu"
print(",".join(n for n in available_impls() if not (gpu and n == "torch")))' 2> "$out/bench.log"); then
  echo "== bench: $impls at $sizes, $rounds rounds ($(left) s left)"
  timeout "$(limit 10 60)" "$py" -m jlstm.app.cli bench --threads default --sizes "$sizes" \
    --impls "$impls" --rounds "$rounds" --out "$out" > "$out/bench.log" 2>&1
  bench_rc=$?
else
  bench_rc=1  # its error is in bench.log; the tests' results are still reported below
fi

echo
if [[ $bench_rc == 0 ]]; then
  cat "$out/bench.md"
else
  echo "bench FAILED (exit status $bench_rc$([[ $bench_rc == 124 ]] && echo ', out of time')); its log:"
  tail -n 30 "$out/bench.log"
fi
echo
if [[ $tests_rc == not_run ]]; then
  echo "tests: not run (see above)"
else
  echo "tests (backend $b): $(tail -n 1 "$tests_log")"
  [[ $tests_rc == 124 ]] && echo "tests: out of time (GPU_BENCH_TEST_S=$test_s); the results so far:"
  # Per file, from the JUnit XML: what ran, what failed, what was never reached.
  # shellcheck disable=SC2086
  "$py" - "$out/tests.xml" $runnable <<'PY' || true
import collections, sys, xml.etree.ElementTree as ET
try:
    cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
except (OSError, ET.ParseError) as e:
    sys.exit(f"  no per-file results ({e})")
files = collections.defaultdict(collections.Counter)
for c in cases:  # classname "tests.test_core"; none for a collection error or the test SIGINT stopped
    parts = (c.get("classname") or c.get("name", "")).split(".")
    name = "/".join(parts[:2] if parts[0] == "tests" else parts[:1]) + ".py" if parts[0] else "(unnamed)"
    kind = next((k.tag for k in c if k.tag in ("failure", "error", "skipped")), "passed")
    files[name][kind] += 1
    files[name]["seconds"] += float(c.get("time", 0))
selected = [a.split("::")[0] for a in sys.argv[2:] if a.split("::")[0].endswith(".py")]
for f in dict.fromkeys(selected + sorted(files)):
    if f in files:
        n = files[f]
        counts = ", ".join(f"{n[k]} {k}" for k in ("passed", "failure", "error", "skipped") if n[k])
        print(f"  {f}: {counts} ({n['seconds']:.0f} s)")
    else:
        print(f"  {f}: not reached")
PY
  grep -E '^(FAILED|ERROR)' "$tests_log" | head -n 20
fi
echo "total $((SECONDS - start)) s; logs in $out/"
[[ $bench_rc == 0 && $tests_rc == 0 ]]
