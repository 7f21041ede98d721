"""Bach's chorales from music21's corpus as piano-rolls: the JSB Chorales task of Greff et al.

Boulanger-Lewandowski et al. (2012) built "JSB Chorales" from these same four-part chorales: one frame
per quarter note, 88 keys (MIDI 21-108), no transposition. We rebuild it from the music21 corpus that
``pip install music21`` ships (nothing is downloaded): a key is on in frame ``t`` if a note of any part
sounds at beat ``t`` (notes between beats are dropped, as sampling at quarter-note resolution does).
Pieces are split 60/20/20 into train/validation/test by a fixed permutation of their sorted names.

Parsing ~350 chorales takes a minute, so the rolls are cached in an ``.npz`` (``~/.cache/jlstm`` by
default) keyed by music21's version, this format's version and the number of pieces.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LOW, KEYS = 21, 88  # MIDI 21 (A0) .. 108 (C8): the piano's 88 keys
FORMAT = 1  # bump when the parsing below changes, so old caches are not reused
SPLIT_SEED = 1503  # arXiv 1503.04069


class MissingExtra(ImportError):
    """An optional dependency of the study is not installed; the message names the extra."""


def require(module: str):
    """Import ``module`` or raise ``MissingExtra`` naming ``pip install 'jlstm[odyssey]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtra(
            f"the odyssey study needs {module}, which is not installed ({e}). Install "
            "the study's extra: pip install 'jlstm[odyssey]'"
        ) from None


def cache_dir() -> Path:
    """``$JLSTM_CACHE`` if set, else ``~/.cache/jlstm``."""
    return Path(os.environ.get("JLSTM_CACHE") or Path.home() / ".cache" / "jlstm")


def chorale_paths() -> list[Path]:
    """The corpus files of Bach's works (MusicXML), sorted by name; four-part ones are kept at parsing."""
    music21 = require("music21")
    paths = music21.corpus.getComposer("bach")
    return sorted((Path(p) for p in paths if Path(p).suffix in (".mxl", ".xml")), key=lambda p: p.name)


def piano_roll(path: Path) -> np.ndarray | None:
    """``[T, 88]`` uint8 roll of one piece at quarter-note resolution, or None if it is not four-part."""
    from music21 import corpus

    score = corpus.parse(str(path))
    if len(score.parts) != 4:
        return None
    events: list = []
    for n in score.flatten().notes:
        start, end = float(n.offset), float(n.offset + n.quarterLength)
        events.extend((start, end, p.midi) for p in n.pitches)  # a chord has several, a note one
    if not events:
        return None
    T = int(np.ceil(max(e for _, e, _ in events)))
    roll = np.zeros((T, KEYS), np.uint8)
    beats = np.arange(T, dtype=np.float64)
    for start, end, m in events:
        on = (beats >= start - 1e-9) & (beats < end - 1e-9)  # the beats at which the note sounds
        if LOW <= m < LOW + KEYS:
            roll[on, m - LOW] = 1
    return roll


def load(max_pieces: int | None = None, cache: Path | None = None) -> dict[str, list[np.ndarray]]:
    """The chorales split by piece: ``{"train": [...], "valid": [...], "test": [...]}`` of ``[T, 88]``.

    Args:
      max_pieces: parse only the first ``max_pieces`` files (sorted by name), e.g. for a quick run;
        None parses all. A cache of all pieces serves any smaller request.
      cache: the cache directory (default ``cache_dir()``).
    """
    music21 = require("music21")
    cache = cache or cache_dir()
    found = _cached(cache, music21.__version__, None)
    if found is None and max_pieces is not None:
        found = _cached(cache, music21.__version__, max_pieces)
    if found is None:
        paths = chorale_paths()[:max_pieces]
        log.info("parsing %d chorales with music21 (cached afterwards in %s)", len(paths), cache)
        parsed = [(i, piano_roll(p)) for i, p in enumerate(paths)]
        found = [(i, r) for i, r in parsed if r is not None]
        _save(cache, music21.__version__, max_pieces, found)
    # The same pieces whether they come from a cache of all or of the first max_pieces files.
    return split([r for i, r in found if max_pieces is None or i < max_pieces])


def split(rolls: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """60/20/20 by a fixed permutation of the pieces (at least one piece in each part)."""
    if len(rolls) < 3:
        raise ValueError(f"jsb: need at least 3 four-part chorales to split; got {len(rolls)}.")
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(rolls))
    n_test = n_valid = max(1, round(0.2 * len(rolls)))
    parts = {
        "test": perm[:n_test],
        "valid": perm[n_test : n_test + n_valid],
        "train": perm[n_test + n_valid :],
    }
    return {k: [rolls[i] for i in sorted(idx)] for k, idx in parts.items()}


def _file(cache: Path, version: str, max_pieces: int | None) -> Path:
    return cache / f"jsb_chorales_m21-{version}_f{FORMAT}_{max_pieces or 'all'}.npz"


def _cached(cache: Path, version: str, max_pieces: int | None) -> list[tuple[int, np.ndarray]] | None:
    """``(index of the file among chorale_paths(), roll)`` of every four-part piece, or None."""
    path = _file(cache, version, max_pieces)
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            roll, lengths, index = z["roll"], z["lengths"], z["index"]
    except Exception as e:  # noqa: BLE001 - a truncated or corrupted cache is parsed again
        log.warning("ignoring the unreadable cache %s (%s)", path, e)
        return None
    return list(zip(index.tolist(), np.split(roll, np.cumsum(lengths)[:-1])))


def _save(cache: Path, version: str, max_pieces: int | None, found: list[tuple[int, np.ndarray]]) -> None:
    path = _file(cache, version, max_pieces)
    index, rolls = [i for i, _ in found], [r for _, r in found]
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
        np.savez_compressed(
            tmp, roll=np.concatenate(rolls), lengths=np.array([len(r) for r in rolls]), index=np.array(index)
        )
        os.replace(tmp, path)
    except OSError as e:  # a read-only home still runs the study, only slower next time
        log.warning("cannot cache the chorales in %s: %s", cache, e)
