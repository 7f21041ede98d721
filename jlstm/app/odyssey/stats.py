"""Statistics of the study: Welch's t-tests against V, and which hyperparameter matters most.

Every metric of the study is lower-is-better (NLL, frame error, bits per character). A variant is
"significantly worse" (better) when Welch's two-sided t-test of its test metrics against V's gives
p < ``ALPHA`` and its mean is higher (lower), as Greff et al. compared mean test performance.

Importance is a simpler stand-in for the paper's fANOVA: the share of the variance of the test metric
explained by each hyperparameter's marginal (its values binned into quartiles; the hidden size by
bucket), as epsilon-squared (eta-squared less its bias under no effect), and the share of the
learning rate x hidden size interaction beyond the two main effects; per variant, then averaged over
the variants. The metric is first ranked within the variant, so that a few trials with huge losses
(NOAF's unbounded outputs) do not dominate; the hyperparameters were sampled independently, so the
binned marginals estimate fANOVA's marginals.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

ALPHA = 0.05
TOP = 0.10  # the best 10 % of the trials by validation metric, as the paper's lower panels
EFFECTIVE_LR = "lr / (1 - momentum)"


def welch_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided p-value of Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``); None when it
    is undefined (fewer than two values, or no variance in either group)."""
    from jlstm.app.odyssey.jsb import require

    stats = require("scipy.stats")
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return None
    with warnings.catch_warnings():  # nearly constant groups (e.g. every trial at chance): p is NaN or moot
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def top_k(n: int) -> int:
    """How many trials form the best 10 % (at least 3 where there are, so that a t-test is defined)."""
    return min(n, max(3, math.ceil(TOP * n)))


def _describe(x: np.ndarray, ref: np.ndarray | None) -> dict:
    out: dict = {
        "n_trials": int(len(x)),
        "median": float(np.median(x)),
        "mean": float(np.mean(x)),
        "best": float(np.min(x)),
    }
    p = None if ref is None else welch_p(x, ref)
    out["p_value"] = p
    significant = ref is not None and p is not None and p < ALPHA
    gap = 0.0 if ref is None else float(np.mean(x) - np.mean(ref))
    out["significantly_worse"] = bool(significant and gap > 0)
    out["significantly_better"] = bool(significant and gap < 0)
    return out


def compare(
    test: np.ndarray, valid: np.ndarray, ref_test: np.ndarray | None, ref_valid: np.ndarray | None
) -> dict:
    """Summary of one variant on one task, against the baseline's trials (None for the baseline).

    Returns:
      ``n_trials, median, mean, best, p_value, significantly_worse, significantly_better`` over all
      trials, and the same under ``"top10"`` for the best 10 % by validation metric.
    """
    out = _describe(test, ref_test)
    top = lambda t, v: t[np.argsort(v, kind="stable")[: top_k(len(t))]]
    ref_top = None if ref_test is None else top(ref_test, ref_valid)
    out["top10"] = _describe(top(test, valid), ref_top)
    return out


def verdict(entry: dict) -> str:
    """``"worse"``, ``"better"`` or ``"n.s."`` from a ``compare`` entry."""
    return "worse" if entry["significantly_worse"] else "better" if entry["significantly_better"] else "n.s."


def _quartile_bins(x: np.ndarray) -> np.ndarray:
    edges = np.quantile(x, [0.25, 0.5, 0.75])
    return np.searchsorted(edges, x, side="right")


def _ss_between(y: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    m = y.mean()
    ss, k = 0.0, 0
    for g in np.unique(groups):
        sel = groups == g
        ss += sel.sum() * (y[sel].mean() - m) ** 2
        k += 1
    return ss, k


def _epsilon2(y: np.ndarray, ss: float, k: int) -> float:
    ss_total = float(np.sum((y - y.mean()) ** 2))
    if ss_total == 0 or len(y) <= k:
        return 0.0
    ms_within = (ss_total - ss) / (len(y) - k)
    return min(1.0, max(0.0, (ss - (k - 1) * ms_within) / ss_total))  # clipped: rounding at the ends


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (0 = lowest)."""
    return np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(1, len(x) - 1)


def _shares(y: np.ndarray, hypers: dict[str, np.ndarray]) -> dict[str, float]:
    """Epsilon-squared of each hyperparameter's binned marginal, the lr x hidden interaction and the
    effective step ``lr / (1 - momentum)``, for one variant's ranks ``y``."""
    one_minus_mu = 1.0 - np.minimum(hypers["momentum"], 1 - 1e-7)
    groups = {
        "lr": _quartile_bins(np.log(hypers["lr"])),
        "hidden": np.asarray(hypers["hidden"]),  # already a few buckets
        "momentum": _quartile_bins(np.log(one_minus_mu)),  # 1 - momentum was drawn log-uniformly
        "noise": _quartile_bins(hypers["noise"]),
    }
    out = {k: _epsilon2(y, *_ss_between(y, g)) for k, g in groups.items()}
    ss_lr, k_lr = _ss_between(y, groups["lr"])
    ss_h, k_h = _ss_between(y, groups["hidden"])
    ss_cells, k_cells = _ss_between(y, groups["lr"] * 1000 + groups["hidden"])
    ss_total = float(np.sum((y - y.mean()) ** 2))
    out["lr x hidden"] = 0.0
    if k_h >= 2 and ss_total > 0 and len(y) > k_cells:
        ms_within = (ss_total - ss_cells) / (len(y) - k_cells)
        ss_int = ss_cells - ss_lr - ss_h
        out["lr x hidden"] = min(1.0, max(0.0, (ss_int - (k_lr - 1) * (k_h - 1) * ms_within) / ss_total))
    effective = _quartile_bins(np.log(hypers["lr"] / one_minus_mu))
    out[EFFECTIVE_LR] = _epsilon2(y, *_ss_between(y, effective))
    return out


def importance(test: np.ndarray, variant: np.ndarray, hypers: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of the variance of the within-variant rank of ``test`` explained by each hyperparameter,
    computed for each variant and averaged over them.

    Args:
      test: ``[N]`` test metrics of every trial of one task (all variants).
      variant: ``[N]`` the variant of each trial.
      hypers: ``{"lr", "hidden", "momentum", "noise"}`` each ``[N]``.

    Returns:
      ``{name: share}`` for each hyperparameter, ``"lr x hidden"`` for their interaction and
      ``"lr / (1 - momentum)"`` for the effective step size of SGD with momentum (a diagnostic: it is
      not a fifth hyperparameter, and it overlaps lr and momentum).
    """
    per = []
    for v in np.unique(variant):
        sel = variant == v
        per.append(_shares(_rank(test[sel]), {k: np.asarray(x)[sel] for k, x in hypers.items()}))
    return {k: float(np.mean([p[k] for p in per])) for k in per[0]}


def noise_effect(test: np.ndarray, variant: np.ndarray, noise: np.ndarray) -> float:
    """Spearman's correlation of the input-noise level with the test metric within each variant, averaged
    over variants: positive when more noise gives worse (higher) metrics."""
    rho = [
        np.corrcoef(_rank(noise[variant == v]), _rank(test[variant == v]))[0, 1] for v in np.unique(variant)
    ]
    return float(np.nanmean(rho)) if np.any(np.isfinite(rho)) else 0.0
