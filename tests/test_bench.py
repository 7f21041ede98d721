"""The benchmark's gradient-equality checks at a tiny size, its registry, and the two-table report."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from jlstm.app import bench, cli
from jlstm.app.bench import impls_rnn


@pytest.fixture(scope="module")
def built():
    prob = bench.make_problem(5, 3, 4, 6, dtype=np.float64)
    return prob, [bench.build(name, prob) for name in bench.ALL_IMPLS]


def test_every_implementation_gives_the_same_gradient(built):
    _, impls = built
    errs = bench.check_gradients(impls, rtol=1e-10)
    assert set(errs) == set(bench.ALL_IMPLS)


def test_gradients_are_not_trivially_equal(built):
    prob, impls = built
    loss, dW, dU, db = impls[0].grads()
    assert dW.shape == prob.W.shape and dU.shape == prob.U.shape and db.shape == prob.b.shape
    for g in (dW, dU, db):
        assert np.max(np.abs(g)) > 1e-4
    # Every gate block gets a distinct gradient, so a permuted gate order could not pass.
    blocks = np.split(db, 4)
    assert min(np.max(np.abs(x - y)) for i, x in enumerate(blocks) for y in blocks[i + 1 :]) > 1e-6


def test_check_gradients_catches_a_wrong_layout(built):
    _, impls = built
    good = impls[0]
    wrong = bench.Impl("wrong", good.run, lambda: (lambda g: (g[0], g[1], g[2], g[3][::-1]))(good.grads()))
    with pytest.raises(AssertionError, match="wrong"):
        bench.check_gradients([good, wrong], rtol=1e-6)


def test_parse_sizes_threads_and_errors():
    assert bench.parse_sizes("100,32,128,128; 1000,8,64,64") == [(100, 32, 128, 128), (1000, 8, 64, 64)]
    with pytest.raises(ValueError, match="T,B,D,H"):
        bench.parse_sizes("100,32,128")
    for empty in (";", "", " ; "):  # refused at the start, not after the first sizes have run
        with pytest.raises(ValueError, match="no size"):
            bench.parse_sizes(empty)
    with pytest.raises(ValueError, match="name must be one of"):
        bench.build("nope", bench.make_problem(2, 1, 1, 1))
    assert bench.parse_threads("default,1") == [None, 1] and bench.parse_threads("4") == [4]
    for bad in ("0", "default,default", "two", ""):
        with pytest.raises(ValueError, match="threads"):
            bench.parse_threads(bad)


def test_the_registry():
    assert bench.ALL_IMPLS == ("manual", "autodiff", "plain", "flax", "equinox", "torch", "lstm_ref")
    assert set(bench.GPU_IMPLS) == {"cudnn", "torch_cuda"}
    assert set(bench.IMPLEMENTATIONS) == set(bench.ALL_IMPLS + bench.GPU_IMPLS)


def test_gpu_implementations_are_offered_only_on_a_gpu():
    offered = bench.available_impls()
    assert set(bench.ALL_IMPLS) <= set(offered)
    if jax.default_backend() == "cpu":
        assert not set(bench.GPU_IMPLS) & set(offered)
        for name in bench.GPU_IMPLS:
            with pytest.raises(ValueError, match=f"{name!r} needs a GPU.*backend is 'cpu'"):
                bench.build(name, bench.make_problem(2, 1, 1, 1))
    else:
        assert "cudnn" in offered


def test_cudnn_layout_through_lstm_ref(built):
    """The cudnn builder's flat weights and its gradient mapping, run through lstm_ref instead of cuDNN
    (which exists only on a GPU): a wrong packing or unpacking gives a different gradient."""
    from jax.experimental import rnn

    prob, impls = built

    def via_ref(xs, h0, c0, w, lengths, D, H, layers, dropout, bidirectional):
        weights = rnn.unpack_lstm_weights(w, D, H, layers, bidirectional)
        return rnn.lstm_ref(xs, h0, c0, *weights, lengths, D, H, layers, dropout, bidirectional)

    with jax.numpy_rank_promotion("allow"):
        impl = dataclasses.replace(impls_rnn.cudnn_impl(prob, np.float64, via_ref), name="cudnn layout")
    errs = bench.check_gradients([impls[0], impl], rtol=1e-10)
    assert errs["cudnn layout"] < 1e-10


def test_two_tables_each_in_its_own_process(tmp_path, monkeypatch):
    # A parent that fixed its own threads must not leak them into the default table.
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    monkeypatch.setenv("JLSTM_BENCH_THREADS", "1")
    result = bench.run([(3, 2, 2, 2)], impls=["manual", "plain", "torch"], rounds=2, out=tmp_path)
    default, one = result["tables"]
    assert default["threads"] is None and default["machine"]["threads"] is None
    assert "XLA_FLAGS" not in default["machine"]
    assert one["machine"]["threads"] == 1 and one["machine"]["torch_threads"] == 1
    assert "intra_op_parallelism_threads=1" in one["machine"]["XLA_FLAGS"]
    rec = one["sizes"][0]["impls"]
    assert rec["torch"]["vs_torch"] == 1.0 and rec["plain"]["vs_plain"] == 1.0
    md = (tmp_path / "bench.md").read_text()
    assert "### Table 1. Default threads" in md and "### Table 2. 1 thread(s) for every framework" in md
    assert "| x plain | x torch |" in md and md.count("| 3, 2, 2, 2 | manual |") == 2
    assert json.loads((tmp_path / "bench.json").read_text())["tables"][1]["threads"] == 1
    assert (tmp_path / "bench.png").stat().st_size > 0


def test_bench_command_errors():
    res = CliRunner().invoke(cli.app, ["bench", "--threads", "0"])
    assert res.exit_code == 2 and "--threads" in res.output
    res = CliRunner().invoke(cli.app, ["bench", "--impls", "manual,nope"])
    assert res.exit_code == 2 and "cudnn" in res.output  # the message lists every registered name


def test_bench_refuses_an_empty_size_list_before_running():
    res = CliRunner().invoke(cli.app, ["bench", "--sizes", ";", "--rounds", "1"])
    assert res.exit_code == 2 and "no size" in res.output
