"""``torch.nn.LSTM``: on the CPU (forward + ``loss.backward()``), and on CUDA where JAX runs on a GPU and
torch has CUDA."""

from __future__ import annotations

import os

import numpy as np

from jlstm.app.bench.problem import Problem, from_ifgo, to_ifgo
from jlstm.app.bench.registry import Impl, implementation, on_gpu


def _grad(p) -> np.ndarray:
    if p.grad is None:  # loss.backward() ran, so only a parameter outside the graph has none
        raise RuntimeError("bench torch: a parameter received no gradient.")
    return p.grad.cpu().numpy()


def _torch_impl(prob: Problem, dt, device: str) -> Impl:
    import torch

    if os.environ.get("JLSTM_BENCH_THREADS"):  # set by configure_threads; unset means torch's default
        torch.set_num_threads(int(os.environ["JLSTM_BENCH_THREADS"]))
    tdt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dt)]
    T, B, D, H = prob.shape
    mod = torch.nn.LSTM(D, H, batch_first=True).to(device=device, dtype=tdt)
    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    w_ih, w_hh, b_ih, b_hh = (mod.get_parameter(n) for n in names)
    with torch.no_grad():
        w_ih.copy_(torch.from_numpy(to_ifgo(prob.W).T.copy()))
        w_hh.copy_(torch.from_numpy(to_ifgo(prob.U).T.copy()))
        b_ih.copy_(torch.from_numpy(to_ifgo(prob.b).copy()))
        b_hh.zero_()
    txs, tys = (torch.from_numpy(np.asarray(a)).to(device=device, dtype=tdt) for a in (prob.xs, prob.ys))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        mod.zero_grad(set_to_none=True)
        out, _ = mod(txs)
        loss = (out * tys).sum()
        loss.backward()
        sync()  # CUDA runs asynchronously: time the work, not its launch
        return loss

    def grads():
        loss = run()
        g = [_grad(p) for p in (w_ih, w_hh, b_ih)]
        return (float(loss.detach().cpu()), from_ifgo(g[0].T), from_ifgo(g[1].T), from_ifgo(g[2]))

    return Impl("", run, grads, None)


@implementation("torch")
def torch_cpu(prob: Problem, dt) -> Impl:
    """``torch.nn.LSTM`` on the CPU."""
    return _torch_impl(prob, dt, "cpu")


def _torch_cuda_available() -> bool:
    if not on_gpu():
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@implementation(
    "torch_cuda",
    available=_torch_cuda_available,
    requires="a GPU for JAX and a CUDA build of torch (torch.cuda.is_available())",
)
def torch_cuda(prob: Problem, dt) -> Impl:
    """``torch.nn.LSTM`` on CUDA (cuDNN's LSTM)."""
    return _torch_impl(prob, dt, "cuda")
