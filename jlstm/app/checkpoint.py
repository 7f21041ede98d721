"""Checkpoints of a training run: parameters and optimizer state, saved atomically, read back exactly.

``save_checkpoint`` writes ``checkpoint/state.npz`` to a temporary file, reads it back, and renames it
over the previous one, which is kept as ``checkpoint/state.prev.npz`` if it reads back too (a corrupt one
is set aside as ``state.corrupt.npz``, so a save never replaces a good checkpoint with a bad one);
``load_latest_checkpoint`` falls back to ``state.prev.npz`` when the newest cannot be read (truncated,
corrupted). ``check_finite`` refuses to save a NaN or Inf state, so the last good checkpoint is never
overwritten by a diverged one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shlex
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

log = logging.getLogger("jlstm.runner")

CHECKPOINT = Path("checkpoint") / "state.npz"
PREVIOUS = Path("checkpoint") / "state.prev.npz"
CORRUPT = Path("checkpoint") / "state.corrupt.npz"  # a newest checkpoint found corrupt by the next save

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

    def resume_command(self, args: list[str]) -> str:
        """The ``jlstm`` command that continues the run interrupted: ``args`` with ``--resume`` and ``--out``.

        ``--overwrite`` is dropped: it would start the run again (and it excludes ``--resume``).
        """
        args = [a for a in args if a not in ("--resume", "--overwrite")] + ["--resume"]
        if "--out" not in args:
            args += ["--out", str(self.out)]
        return "jlstm " + shlex.join(args)


def params_digest(params: Any) -> str:
    """sha256 over every leaf's shape, dtype and bytes, in ``jax.tree.leaves`` order (dict keys sorted)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, params, opt_state, step: int, wall_seconds: float, config) -> None:
    """Write ``(params, opt_state)`` and the step to ``path`` atomically, never at a good checkpoint's cost.

    The new file is written to a temporary file, fsynced and read back before it is renamed over
    ``path``. The checkpoint it replaces becomes ``state.prev.npz`` only if it reads back; a corrupt one
    is set aside as ``state.corrupt.npz`` and the previous one kept, since it may be the only good one.
    """
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
        _check_reads_back(tmp, arrays)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a bad write leaves no half-written file behind
        raise
    if path.exists():
        if _reads_back(path):
            os.replace(path, _previous(path))  # between the two renames, the previous one is still there
        else:
            log.warning(
                "checkpoint %s is corrupt; set aside as %s, keeping %s", path, _corrupt(path), _previous(path)
            )
            os.replace(path, _corrupt(path))
    os.replace(tmp, path)  # atomic: a reader sees the old checkpoint or the new one, never half


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def _corrupt(path: Path) -> Path:
    return path.with_name(path.stem + ".corrupt" + path.suffix)


def _read_all(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, each checked against its CRC (a bit flip anywhere raises)."""
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()  # reads every member to its end; np.load alone may stop short of the CRC check
    if bad is not None:
        raise ValueError(f"checkpoint {path}: {bad} fails its CRC check")
    # Our own file handle: np.load leaks its own when the file is truncated.
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _check_reads_back(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Raise ``RunError`` unless ``path`` holds exactly ``arrays`` (names, shapes, dtypes and bytes)."""
    try:
        got = _read_all(path)
        same = got.keys() == arrays.keys() and all(
            got[k].shape == a.shape and got[k].dtype == a.dtype and got[k].tobytes() == a.tobytes()
            for k, a in arrays.items()
        )
        why = None if same else "its arrays differ from those written"
    except Exception as e:  # noqa: BLE001 - zipfile and numpy raise many kinds
        why = f"{type(e).__name__}: {e}"
    if why is not None:
        raise RunError(
            f"checkpoint {path} does not read back as written ({why}); it was removed and the checkpoints "
            f"in {path.parent} are kept."
        )


def _reads_back(path: Path) -> bool:
    """Whether ``path`` is a readable checkpoint: every CRC right and a meta that parses."""
    try:
        _meta_of(path, _read_all(path))
    except Exception:  # noqa: BLE001 - zipfile, numpy and json raise many kinds
        return False
    return True


def _meta_of(path: Path, arrays) -> dict:
    meta = json.loads(str(arrays["meta"]))
    if not (
        isinstance(meta, dict) and type(meta.get("step")) is int and isinstance(meta.get("config"), dict)
    ):
        raise ValueError(f"checkpoint {path}: its meta is not a step and a configuration; got {meta!r:.200}")
    return meta


def read_meta(path: Path) -> dict:
    """The meta of a checkpoint (``step``, ``wall_seconds``, ``config``), every CRC of the file checked."""
    return _meta_of(path, _read_all(path))


def load_latest_checkpoint(path: Path, template, check=None) -> tuple[Any, dict] | None:
    """The newest readable checkpoint among ``path`` and the previous one kept beside it.

    A checkpoint that cannot be read (truncated, corrupted) is logged with the reason and the previous
    one is tried. ``check(meta)``, if given, sees each readable checkpoint's meta before its arrays are
    loaded and raises (a ``ValueError``) for one of another configuration, which is no reason to fall
    back. Returns None if there is neither file; raises ``RunError`` naming both reasons if neither
    can be read.
    """
    reasons: list[str] = []
    for candidate in (path, _previous(path)):
        if not candidate.exists():
            continue
        meta = _attempt(candidate, reasons, partial(read_meta, candidate))
        if meta is None:
            continue
        if check is not None:
            check(meta)
        loaded = _attempt(candidate, reasons, partial(load_checkpoint, candidate, template))
        if loaded is None:
            continue
        if reasons:
            log.warning("resuming from the previous checkpoint %s (step %d)", candidate, loaded[1]["step"])
        return loaded
    if reasons:
        raise RunError("no readable checkpoint: " + "; ".join(reasons))
    return None


def _attempt(candidate: Path, reasons: list[str], read):
    """``read()``, or None with the reason logged and appended to ``reasons`` if it raises."""
    try:
        return read()
    except Exception as e:  # noqa: BLE001 - zipfile, pickle and numpy raise many kinds
        reasons.append(f"{candidate}: {type(e).__name__}: {e}")
        then = "trying the previous one" if ".prev" not in candidate.name else "there is no older one"
        log.warning("checkpoint %s cannot be read (%s: %s); %s", candidate, type(e).__name__, e, then)
        return None


def load_checkpoint(path: Path, template) -> tuple[Any, dict]:
    """Read a checkpoint into the structure of ``template`` (``(params, opt_state)``); returns it and meta."""
    leaves, treedef = jax.tree.flatten(template)
    arrays = _read_all(path)
    meta = _meta_of(path, arrays)
    got = [arrays[f"leaf_{i:04d}"] for i in range(len(leaves))]
    extra = len([k for k in arrays if k.startswith("leaf_")]) - len(leaves)
    if extra:
        raise ValueError(
            f"checkpoint {path} holds {len(leaves) + extra} arrays; this run needs {len(leaves)}."
        )
    for i, (a, b) in enumerate(zip(got, leaves)):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"checkpoint {path}: array {i} is {a.shape} {a.dtype}; expected {b.shape} {b.dtype}. "
                "Was it written by another configuration?"
            )
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in got]), meta


def restore(cfg, out: Path, template) -> tuple[Any, int, float]:
    """The state a resolved config starts from: ``(template, 0, 0.0)`` or a resumed ``(state, step, wall)``.

    Removes the temporary files of a process killed mid-write. With ``cfg.resume``, reads the latest
    checkpoint under ``out``, after checking from its meta that the same configuration wrote it.
    """
    ckpt_path = out / CHECKPOINT
    for stale in ckpt_path.parent.glob(ckpt_path.name + ".tmp*"):  # left by a process killed mid-write
        stale.unlink()

    def same_configuration(meta: dict) -> None:
        for k in _RESUME_FIELDS:
            if meta["config"].get(k) != getattr(cfg, k):
                raise ValueError(
                    f"resume: {k} is {getattr(cfg, k)!r} but the checkpoint in {out} was "
                    f"written with {meta['config'].get(k)!r}; use the same value or another --out."
                )

    loaded = load_latest_checkpoint(ckpt_path, template, same_configuration) if cfg.resume else None
    if loaded is None:
        if cfg.resume:  # no checkpoint at all: a fresh start
            log.warning("resume: no checkpoint in %s; starting from step 0", out)
        return template, 0, 0.0
    state, meta = loaded
    start = meta["step"]
    if start > cfg.steps:
        raise ValueError(f"resume: the checkpoint is at step {start}, past steps={cfg.steps}.")
    log.info("resuming %s from step %d", cfg.task, start)
    return state, start, meta["wall_seconds"]


def save_interrupted(cfg, out: Path, state: tuple, wall_seconds: float):
    """On Ctrl-C: save ``state = (params, opt_state, step)`` if it is finite, then raise ``Interrupted``."""
    params, opt_state, step = state
    ckpt_path = out / CHECKPOINT
    if not all_finite((params, opt_state)):
        raise Diverged(diverged_message(cfg.task, step, "the parameters are not finite", ckpt_path)) from None
    save_checkpoint(ckpt_path, params, opt_state, step, wall_seconds, cfg)
    raise Interrupted(step, out) from None


def all_finite(tree) -> bool:
    """Whether every leaf of ``tree`` is free of NaN and Inf (on the host)."""
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def diverged_message(task: str, step: int, what: str, ckpt_path: Path) -> str:
    """The message of ``Diverged``: where, why, whether a good checkpoint is kept, what to try."""
    kept = f"the last good checkpoint ({ckpt_path}) is kept" if ckpt_path.exists() else "no checkpoint"
    return f"{task}: training diverged at step {step}: {what}; {kept}. Try a smaller --lr or --clip."


def check_finite(task: str, step: int, params, opt_state, metrics, ckpt_path: Path) -> None:
    """Never save a non-finite state: a NaN step would otherwise overwrite the last good checkpoint."""
    if metrics is not None and not np.isfinite(float(metrics["loss"])):
        raise Diverged(diverged_message(task, step, f"the loss is {float(metrics['loss'])}", ckpt_path))
    if not all_finite((params, opt_state)):
        raise Diverged(diverged_message(task, step, "the parameters are not finite", ckpt_path))
