"""The dtype policy: the compute dtype, the state dtype, and the precision of the products.

- The compute dtype (``compute_dtype=``, else ``result_type(xs, *params)``) is the dtype of ``xs``, of
  the weights as product operands, of the output and of the recurrent input state.
- The state dtype (``state_dtype``) is that of every other state (the LSTM's ``c``), the gate math,
  the pre-activations, every backward carry and every accumulation: float32 under 16-bit compute.
- Products (``matmul``) take their operands in the compute dtype and accumulate in the state dtype.

On a GPU, XLA runs float32 products in TF32 by default (a 10-bit mantissa, like float16's): a float32
run is then accurate to about 1e-3, not 1e-7. ``with jax.default_matmul_precision("highest"):`` around
the traced computation (or the ``jax_default_matmul_precision`` flag) gives full float32 products; jlstm
sets no precision of its own, so the user's choice holds. bfloat16 and float16 products are unaffected.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def state_dtype(compute: jnp.dtype) -> jnp.dtype:
    """The dtype of the cell state, the gate math and every accumulation for a given compute dtype.

    float32 when ``compute`` is narrower than 32 bits (bfloat16, float16): a 16-bit cell state would
    lose the small increments ``a_t * i_t`` it sums over many steps (bfloat16 keeps 8 significant bits)
    and float16 overflows at 65504. Otherwise ``compute`` itself (float32, float64).
    """
    compute = jnp.dtype(compute)
    return jnp.dtype(jnp.float32) if compute.itemsize < 4 else compute


def matmul(a: jax.Array, b: jax.Array, acc: jnp.dtype) -> jax.Array:
    """``a @ b`` on operands as given (16-bit under low-precision compute), accumulated and returned in
    ``acc``: the products then cost 16-bit operand traffic but no 16-bit rounding of the sums. For
    float32 and float64 operands with ``acc`` their own dtype this is the plain ``a @ b``."""
    return jnp.matmul(a, b, preferred_element_type=acc)


def check_compute_dtype(compute_dtype, where: str):
    """None, or a real floating dtype that JAX can run in (float64 only with jax_enable_x64)."""
    if compute_dtype is None:
        return None
    try:
        dt = jnp.dtype(compute_dtype)
    except TypeError:
        dt = None
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        got = dt.name if dt is not None else repr(compute_dtype)
        raise TypeError(
            f"{where}: compute_dtype must be None or a real floating dtype (jnp.bfloat16, jnp.float16, "
            f"jnp.float32, jnp.float64); got {got}."
        )
    if jax.dtypes.canonicalize_dtype(dt) != dt:
        raise ValueError(
            f"{where}: compute_dtype={dt.name} needs jax_enable_x64 (otherwise JAX computes in "
            f"{jax.dtypes.canonicalize_dtype(dt).name}); turn it on with "
            "jax.config.update('jax_enable_x64', True) or pass compute_dtype=None."
        )
    return dt
