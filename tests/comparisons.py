"""Comparisons shared by the tests against other libraries: tolerances, and the same loss in JAX and torch."""

import jax
import jax.numpy as jnp
import numpy as np


def close(a, b, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12, err_msg=what)


def close32(a, b, what=""):
    """For Keras on JAX, which rounds each tanh to float32 in a float64 LSTM (the callers' T = 5 steps).

    Per step two tanh, each a cast, the tanh and, in the backward, a cast, y^2, 1 - y^2 and a product:
    about 12 float32 roundings a step, n = 12 T = 60, n * eps32 = 7e-6 (measured 5.7e-7; the products
    are float64, so a GPU's TF32 plays no part); atol = rtol / 10 for the entries near zero."""
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=what)


def exact(a, b, what=""):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=what)


def nontrivial(*trees):
    for leaf in jax.tree.leaves(trees):
        assert float(np.max(np.abs(np.asarray(leaf)))) > 1e-6  # so that comparing them means something


def jax_loss(hs, h, c):
    """Touches the outputs, the final h and the final c with different weights (same as torch_loss)."""
    w = jnp.sin(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
    return jnp.sum(w * hs) + 0.5 * jnp.sum(hs**2) + jnp.sum(jnp.cos(h)) + 0.3 * jnp.sum(c**3)


def torch_loss(hs, h, c):
    import torch

    w = torch.sin(torch.arange(hs.numel(), dtype=hs.dtype)).reshape(hs.shape)
    return (w * hs).sum() + 0.5 * (hs**2).sum() + torch.cos(h).sum() + 0.3 * (c**3).sum()


def torch_grads_match(g_layers, g_xs, g_carries, lstm, x, h0, c0):
    """jlstm's gradients (layers, inputs, initial carries) equal torch's ``.grad`` after ``backward()``."""
    from jlstm import interop

    g_torch = interop.to_torch(g_layers)  # the gradient of b lands in bias_ih, as the bias does
    for name, p in lstm.named_parameters():
        close(g_torch[name.replace("bias_hh", "bias_ih")], p.grad, name)  # d/d b_hh = d/d b_ih = d/d b
    close(g_xs, x.grad, "dxs")
    g_h0, g_c0 = interop.to_torch_state(g_carries)
    close(g_h0, h0.grad, "dh0")
    close(g_c0, c0.grad, "dc0")
