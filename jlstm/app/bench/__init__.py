"""Benchmark of the LSTM training step across implementations (issues 2 and 6).

Every implementation computes the value and the gradient (w.r.t. the weights) of the same loss,
``sum(hs * Y)`` for a fixed random ``Y``, on the same weights mapped into its own layout. The
gradients are mapped back to jlstm's ``(W, U, b)`` and checked equal before anything is timed; each
step is compiled (warmed up) first, then all implementations run round-robin, one call each per round,
so that a load spike on the (shared) machine hits every implementation alike.

Implementations (names used in tables and on the command line), one builder each in the registry:

- ``manual``: ``jlstm.lstm(..., backward="manual")``, the hand-written backward (custom_vjp).
- ``autodiff``: ``jlstm.lstm(..., backward="autodiff")``, ``jax.grad`` through the same forward.
- ``plain``: a ``lax.scan`` LSTM as users write it (input projection inside the loop) under ``jax.grad``.
- ``flax``: ``flax.linen.RNN(OptimizedLSTMCell)``.
- ``equinox``: ``equinox.nn.LSTMCell`` under ``vmap`` (batch) and ``lax.scan`` (time).
- ``torch``: ``torch.nn.LSTM`` on the CPU (forward + ``loss.backward()``).
- ``lstm_ref``: ``jax.experimental.rnn.lstm_ref`` under ``jax.grad``.
- GPU only (where ``jax.default_backend() == "gpu"``): ``cudnn``, ``jax.experimental.rnn.lstm``; and
  ``torch_cuda``, ``torch.nn.LSTM`` on CUDA where ``torch.cuda.is_available()``.

Modules: ``problem`` (sizes, weights, layouts), ``registry`` (``@implementation``, ``build``), the
builders (``impls_jax``, ``impls_libs``, ``impls_torch``, ``impls_rnn``), ``timing`` (gradient check,
round-robin), ``threads`` (thread settings, one process each), ``worker``, ``report`` (Markdown, JSON,
plot) and ``suite`` (``run``). torch, flax and equinox are imported only when their implementation is
built. ``run`` measures each thread setting in a fresh process; to measure in this process instead, call
``configure_threads`` before JAX's first computation, then ``measure``.
"""

# The builder modules register the implementations, in the order of the tables.
from jlstm.app.bench import impls_jax, impls_libs, impls_torch, impls_rnn  # noqa: F401, I001
from jlstm.app.bench.problem import CORE_SIZES, SIZES, Problem, flops, make_problem, parse_sizes
from jlstm.app.bench.registry import IMPLEMENTATIONS, Impl, available_impls, build, implementation
from jlstm.app.bench.report import machine, markdown, plot
from jlstm.app.bench.suite import DEFAULT_THREADS, run
from jlstm.app.bench.threads import configure_threads, parse_threads
from jlstm.app.bench.timing import check_gradients, measure, run_size, time_round_robin

#: The implementations every machine runs, in the order of the tables.
ALL_IMPLS: tuple[str, ...] = tuple(n for n, e in IMPLEMENTATIONS.items() if e.requires == "")
#: Those offered only where JAX runs on a GPU.
GPU_IMPLS: tuple[str, ...] = tuple(n for n in IMPLEMENTATIONS if n not in ALL_IMPLS)
#: issue 2's core comparison.
CORE_IMPLS = ("manual", "autodiff", "plain")

__all__ = [
    "ALL_IMPLS",
    "CORE_IMPLS",
    "CORE_SIZES",
    "DEFAULT_THREADS",
    "GPU_IMPLS",
    "IMPLEMENTATIONS",
    "SIZES",
    "Impl",
    "Problem",
    "available_impls",
    "build",
    "check_gradients",
    "configure_threads",
    "flops",
    "implementation",
    "machine",
    "make_problem",
    "markdown",
    "measure",
    "parse_sizes",
    "parse_threads",
    "plot",
    "run",
    "run_size",
    "time_round_robin",
]
