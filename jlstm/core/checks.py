"""Validation at the public boundary. Shapes are static, so every check runs at trace time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jlstm.core.params import LSTMParams

BACKWARD_MODES = ("manual", "autodiff")


def _shape(x) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _as_array(name: str, x, where: str):
    """``x`` as an array: arrays and tracers as they are, anything else (lists, scalars) through numpy, so
    that a ragged or non-numeric list is refused naming the argument instead of dumping it."""
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        return x
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nesting
        raise TypeError(
            f"{where}: {name} must be an array (or a nested list of numbers of a regular shape); got "
            f"{type(x).__name__} that numpy cannot read as one ({e})."
        ) from None
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError(
            f"{where}: {name} must be an array of numbers; got {type(x).__name__} holding "
            f"{type(arr.reshape(-1)[0]).__name__ if arr.size else 'nothing'}."
        )
    return arr


def _floating(name: str, x, where: str) -> jax.Array:
    if not hasattr(x, "dtype"):  # a list or a scalar: as jnp.asarray reads it (JAX's default dtypes)
        x = jnp.asarray(_as_array(name, x, where))
    dt = jnp.dtype(x.dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        kind = "complex" if jnp.issubdtype(dt, jnp.complexfloating) else dt.name
        raise TypeError(
            f"{where}: {name} must be a real floating array (float32, float64, bfloat16, float16); "
            f"got dtype {kind}. Cast it first, e.g. {name}.astype(jnp.float32)."
        )
    return x


def check_params(params, where: str) -> LSTMParams:
    """Returns ``params`` as LSTMParams; raises naming the disagreeing part."""
    if not (isinstance(params, tuple) and len(params) == 3):
        raise TypeError(
            f"{where}: params must be jlstm.LSTMParams(W, U, b); got {type(params).__name__}. "
            "Create it with jlstm.init(key, input_size, hidden_size)."
        )
    W, U, b = (_floating(n, p, where) for n, p in zip(("params.W", "params.U", "params.b"), params))
    if U.ndim != 2 or U.shape[1] != 4 * U.shape[0]:
        raise ValueError(f"{where}: params.U must be [H, 4H]; got shape {_shape(U)}.")
    H = U.shape[0]
    if W.ndim != 2 or W.shape[1] != 4 * H:
        raise ValueError(
            f"{where}: params.W must be [D, 4H] with 4H = {4 * H} from params.U {_shape(U)}; "
            f"got shape {_shape(W)}."
        )
    if b.shape != (4 * H,):
        raise ValueError(
            f"{where}: params.b must be [4H] = ({4 * H},) from params.U {_shape(U)}; got shape {_shape(b)}."
        )
    return LSTMParams(W, U, b)


def check_xs(xs, D: int, where: str, *, name: str = "xs", time_axis: bool = True):
    xs = _floating(name, xs, where)
    want = "[..., T, D]" if time_axis else "[..., D]"
    if xs.ndim < (2 if time_axis else 1) or xs.shape[-1] != D:
        raise ValueError(
            f"{where}: {name} must be {want} with D = {D} from params.W; got shape {_shape(xs)}."
        )
    return xs


def check_carry(
    carry, batch_shape: tuple[int, ...], H: int, where: str, R: int | None = None, *, arg: str = "carry"
):
    """A carry is an (h, c) pair: ``h [..., R]`` (R = H, or the projection width) and ``c [..., H]``, each
    broadcastable to the batch shape. ``arg`` names it in errors (``carries[1]`` in a stack)."""
    if not (isinstance(carry, (tuple, list)) and len(carry) == 2):
        got = type(carry).__name__
        if isinstance(carry, (tuple, list)):
            got += f" of length {len(carry)}"
        raise TypeError(f"{where}: {arg} must be an (h, c) pair such as jlstm.LSTMState(h, c); got {got}.")
    R = H if R is None else R
    out = []
    for name, v, width in zip((f"{arg}.h", f"{arg}.c"), carry, (R, H)):
        v = _floating(name, v, where)
        want = batch_shape + (width,)
        try:
            ok = v.shape[-1:] == (width,) and np.broadcast_shapes(v.shape, want) == want
        except ValueError:
            ok = False
        if not ok:
            size = "H" if width == H else "the projection width"
            raise ValueError(
                f"{where}: {name} must be [..., {'H' if width == H else 'P'}] = {want} (or broadcastable to "
                f"it), batch shape from xs and {size} = {width} from params.U; got shape {_shape(v)}."
            )
        out.append(v)
    return tuple(out)


def check_state(carry, cell, batch_shape: tuple[int, ...], widths: tuple[int, ...], where: str, arg="carry"):
    """The initial state of a cell with declared states (``cell.state``): a tuple in its order, each
    ``[..., width]`` broadcastable to the batch shape. The ``(h, c)`` state keeps ``check_carry``'s words."""
    names = tuple(st.name for st in cell.state)
    if names == ("h", "c"):
        return check_carry(carry, batch_shape, widths[1], where, widths[0], arg=arg)
    want = f"the {cell.name!r} cell's state, a tuple ({', '.join(names)}) of [..., width] arrays"
    if not (isinstance(carry, (tuple, list)) and len(carry) == len(names)):
        got = type(carry).__name__
        if isinstance(carry, (tuple, list)):
            got += f" of length {len(carry)}"
        raise TypeError(f"{where}: {arg} must be {want}; got {got}.")
    out = []
    for name, v, width in zip(names, carry, widths):
        v = _floating(f"{arg}.{name}", v, where)
        full = batch_shape + (width,)
        try:
            ok = v.shape[-1:] == (width,) and np.broadcast_shapes(v.shape, full) == full
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"{where}: {arg}.{name} must be [..., {width}] = {full} (or broadcastable to it), the batch "
                f"shape of xs and the width the {cell.name!r} cell declares; got shape {_shape(v)}."
            )
        out.append(v)
    return tuple(out)


def check_lengths(lengths, batch_shape: tuple[int, ...], T: int, where: str):
    # Values known at trace time (a list, a tuple, a numpy array, even inside jit) are always checked;
    # only traced ones cannot be. Converting a list with jnp first would make it a tracer under jit.
    from_list = not hasattr(lengths, "dtype")
    lengths = _as_array("lengths", lengths, where)
    if from_list and lengths.size == 0:  # numpy reads [] as float64; for an empty batch it means no lengths
        lengths = lengths.astype(np.int32)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{where}: lengths must be an integer array; got dtype {lengths.dtype}.")
    if _shape(lengths) != batch_shape:
        raise ValueError(
            f"{where}: lengths must have the batch shape of xs, {batch_shape}; got shape {_shape(lengths)}."
        )
    if not isinstance(lengths, jax.core.Tracer):
        arr = np.asarray(lengths)
        lengths = jnp.asarray(arr)  # numpy int64 becomes JAX's default integer
        if arr.size and (arr.min() < 0 or arr.max() > T):
            raise ValueError(
                f"{where}: lengths must lie in [0, T] = [0, {T}]; got min {arr.min()}, max {arr.max()}."
            )
    # Traced lengths cannot be checked here (jlstm.debug.checked_lstm does it at run time); clamping
    # makes a length above T act as T and a negative one as 0, never an out-of-bounds gather.
    return jnp.clip(lengths, 0, T)


def check_backward(backward, where: str) -> None:
    if backward not in BACKWARD_MODES:
        raise ValueError(f"{where}: backward must be one of {BACKWARD_MODES}; got {backward!r}.")


def check_cell_args(params, carry, x):
    params = check_params(params, "jlstm.cell")
    x = check_xs(x, params.input_size, "jlstm.cell", name="x", time_axis=False)
    h, c = check_carry(carry, x.shape[:-1], params.hidden_size, "jlstm.cell")
    shape = x.shape[:-1] + (params.hidden_size,)
    return jnp.broadcast_to(h, shape), jnp.broadcast_to(c, shape)
