"""Checkpoints of a training run: parameters and optimizer state, saved atomically, read back exactly.

``save_checkpoint`` writes ``checkpoint/state.npz`` to a temporary file and renames it over the
previous one, which is kept as ``checkpoint/state.prev.npz``; ``load_latest_checkpoint`` falls back to
that one when the newest cannot be read (truncated, corrupted). ``check_finite`` refuses to save a
NaN or Inf state, so the last good checkpoint is never overwritten by a diverged one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger("jlstm.runner")

CHECKPOINT = Path("checkpoint") / "state.npz"
PREVIOUS = Path("checkpoint") / "state.prev.npz"

# Fields that must agree between a checkpoint and the run resuming it (``steps`` may grow).
_RESUME_FIELDS = ("task", "seed", "optimizer", "lr", "batch_size", "clip", "hidden_size", "seq_len")


class RunError(Exception):
    """A run that cannot go on for a reason outside the model: unwritable output, no usable checkpoint."""


class Diverged(RunError):
    """The loss or the parameters became NaN or Inf; nothing was saved after the last good step."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint; ``step`` is the last completed step."""

    def __init__(self, step: int, out: Path):
        super().__init__(f"interrupted after step {step}; checkpoint in {out / CHECKPOINT}")
        self.step, self.out = step, out


def params_digest(params: Any) -> str:
    """sha256 over every leaf's shape, dtype and bytes, in ``jax.tree.leaves`` order (dict keys sorted)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, params, opt_state, step: int, wall_seconds: float, config) -> None:
    """Write ``(params, opt_state)`` and the step to ``path`` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree.leaves((params, opt_state))
    arrays: dict[str, Any] = {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    meta = {"step": step, "wall_seconds": wall_seconds, "config": dataclasses.asdict(config)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    if path.exists():
        os.replace(path, _previous(path))  # between the two renames, the previous one is still there
    os.replace(tmp, path)  # atomic: a reader sees the old checkpoint or the new one, never half


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def load_latest_checkpoint(path: Path, template) -> tuple[Any, dict] | None:
    """The newest readable checkpoint among ``path`` and the previous one kept beside it.

    A checkpoint that cannot be read (truncated, corrupted, of another configuration) is logged with
    the reason and the previous one is tried. Returns None if there is neither file; raises
    ``RunError`` naming both reasons if neither can be read.
    """
    reasons = []
    for candidate in (path, _previous(path)):
        if not candidate.exists():
            continue
        try:
            loaded = load_checkpoint(candidate, template)
        except Exception as e:  # noqa: BLE001 - zipfile, pickle and numpy raise many kinds
            reasons.append(f"{candidate}: {type(e).__name__}: {e}")
            log.warning("checkpoint %s cannot be read (%s: %s); trying the previous one", candidate,
                        type(e).__name__, e)  # fmt: skip
            continue
        if reasons:
            log.warning("resuming from the previous checkpoint %s (step %d)", candidate, loaded[1]["step"])
        return loaded
    if reasons:
        raise RunError("no readable checkpoint: " + "; ".join(reasons))
    return None


def load_checkpoint(path: Path, template) -> tuple[Any, dict]:
    """Read a checkpoint into the structure of ``template`` (``(params, opt_state)``); returns it and meta."""
    leaves, treedef = jax.tree.flatten(template)
    # Our own file handle: np.load leaks its own when the file is truncated.
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        got = [z[f"leaf_{i:04d}"] for i in range(len(leaves))]
        extra = len([k for k in z.files if k.startswith("leaf_")]) - len(leaves)
    if extra:
        raise ValueError(
            f"checkpoint {path} holds {len(leaves) + extra} arrays; this run needs {len(leaves)}."
        )
    for i, (a, b) in enumerate(zip(got, leaves)):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"checkpoint {path}: array {i} is {a.shape} {a.dtype}; expected {b.shape} "
                             f"{b.dtype}. Was it written by another configuration?")  # fmt: skip
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in got]), meta


def restore(cfg, out: Path, template) -> tuple[Any, int, float]:
    """The state a resolved config starts from: ``(template, 0, 0.0)`` or a resumed ``(state, step, wall)``.

    Removes the temporary files of a process killed mid-write. With ``cfg.resume``, reads the latest
    checkpoint under ``out`` and checks that it was written by the same configuration.
    """
    ckpt_path = out / CHECKPOINT
    for stale in ckpt_path.parent.glob(ckpt_path.name + ".tmp*"):  # left by a process killed mid-write
        stale.unlink()
    loaded = load_latest_checkpoint(ckpt_path, template) if cfg.resume else None
    if loaded is None:
        if cfg.resume:  # no checkpoint at all: a fresh start
            log.warning("resume: no checkpoint in %s; starting from step 0", out)
        return template, 0, 0.0
    state, meta = loaded
    for k in _RESUME_FIELDS:
        if meta["config"][k] != getattr(cfg, k):
            raise ValueError(
                f"resume: {k} is {getattr(cfg, k)!r} but the checkpoint in {out} was "
                f"written with {meta['config'][k]!r}; use the same value or another --out."
            )
    start = meta["step"]
    if start > cfg.steps:
        raise ValueError(f"resume: the checkpoint is at step {start}, past steps={cfg.steps}.")
    log.info("resuming %s from step %d", cfg.task, start)
    return state, start, meta["wall_seconds"]


def all_finite(tree) -> bool:
    """Whether every leaf of ``tree`` is free of NaN and Inf (on the host)."""
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def diverged_message(task: str, step: int, what: str, ckpt_path: Path) -> str:
    """The message of ``Diverged``: where, why, whether a good checkpoint is kept, what to try."""
    kept = f"the last good checkpoint ({ckpt_path}) is kept" if ckpt_path.exists() else "no checkpoint"
    return (f"{task}: training diverged at step {step}: {what}; {kept}. Try a smaller --lr or "
            "--clip.")  # fmt: skip


def check_finite(task: str, step: int, params, opt_state, metrics, ckpt_path: Path) -> None:
    """Never save a non-finite state: a NaN step would otherwise overwrite the last good checkpoint."""
    if metrics is not None and not np.isfinite(float(metrics["loss"])):
        raise Diverged(diverged_message(task, step, f"the loss is {float(metrics['loss'])}", ckpt_path))
    if not all_finite((params, opt_state)):
        raise Diverged(diverged_message(task, step, "the parameters are not finite", ckpt_path))
