"""jlstm against ``torch.nn.LSTM`` (one layer; two layers bidirectional), torch autograd for its gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlstm import interop
from jlstm.app.parity.common import ParityRow, Sizes, dtype, dtype_name, inputs, library, loss, maxdiff
from jlstm.stacked import stacked_lstm


@library("torch")
def torch_rows(key, s: Sizes) -> list[ParityRow]:
    import torch

    torch.set_num_threads(1)
    rows = []
    for n, (layers_n, bi) in enumerate(((1, False), (2, True))):
        torch.manual_seed(n)
        out_diff, grad_diff = _one_config(torch, jax.random.fold_in(key, n), s, layers_n, bi)
        config = f"{layers_n} layer{'s' if layers_n > 1 else ''}, {'bi' if bi else 'uni'}directional"
        rows.append(ParityRow(f"torch {torch.__version__}", config, dtype_name(), out_diff, grad_diff))
    return rows


def _one_config(torch, key, s: Sizes, layers_n: int, bi: bool) -> tuple[float, float]:
    tdt = torch.float64 if dtype() == jnp.float64 else torch.float32
    m = torch.nn.LSTM(s.D, s.H, num_layers=layers_n, bidirectional=bi, batch_first=True).to(tdt)
    dirs = 2 if bi else 1
    xs, h0, c0 = inputs(key, s, (layers_n * dirs, s.B, s.H))
    tx, th, tc = (torch.tensor(np.asarray(a)).requires_grad_() for a in (xs, h0, c0))
    out, (hn, cn) = m(tx, (th, tc))
    w = torch.sin(torch.arange(out.numel(), dtype=tdt)).reshape(out.shape)
    t_loss = (w * out).sum() + 0.5 * (out**2).sum() + torch.cos(hn).sum() + 0.3 * (cn**3).sum()
    t_loss.backward()

    layers = interop.from_torch(m)
    carries = interop.from_torch_state((h0, c0), bidirectional=bi)

    def f(layers, xs, carries):
        hs, finals = stacked_lstm(layers, xs, carries, bidirectional=bi)
        flat = [st for layer in finals for st in (layer if bi else (layer,))]
        h, c = (jnp.stack([st[k] for st in flat]) for k in (0, 1))
        return loss(hs, h, c), (hs, h, c)

    (_, jout), (g_layers, g_xs, g_carries) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        layers, xs, carries
    )
    g_sd = interop.to_torch(g_layers)  # d/d bias lands in bias_ih; torch's bias_hh.grad is the same
    lib_g = [p.grad for name, p in m.named_parameters()]
    our_g = [g_sd[name.replace("bias_hh", "bias_ih")] for name, _ in m.named_parameters()]
    g_h0, g_c0 = interop.to_torch_state(g_carries)
    out_diff = maxdiff(jout, (out.detach(), hn.detach(), cn.detach()))
    grad_diff = maxdiff((our_g, g_xs, g_h0, g_c0), ([g.detach() for g in lib_g], tx.grad, th.grad, tc.grad))
    return out_diff, grad_diff
