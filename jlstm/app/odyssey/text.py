"""The prose of ``report.md``: the setup, and the paper's findings beside ours, point by point."""

from __future__ import annotations

from jlstm.app.odyssey.search import BASELINE

# (the paper's claim, the variants it is about; their per-task verdicts are report.PAPER)
VARIANT_FINDINGS = (
    ("No variant improves on V significantly.", None),
    ("NFG (no forget gate) is significantly worse on all three datasets.", ("NFG",)),
    ("NOAF (no output activation) is significantly worse on all three datasets.", ("NOAF",)),
    (
        "NIG, NOG and NIAF are significantly worse on speech (TIMIT) and handwriting (IAM Online), but not "
        "on music (JSB Chorales).",
        ("NIG", "NOG", "NIAF"),
    ),
    (
        "CIFG (coupled input and forget gate) and NP (no peepholes) make no significant difference.",
        ("CIFG", "NP"),
    ),
)
HYPER_INTRO = (
    "Hyperparameters (paper: the learning rate matters most, then the hidden size, and the two barely "
    "interact; momentum hardly matters; input noise helped TIMIT and hurt the others). `lr / (1 - momentum)` "
    "is the effective step size of SGD with momentum, a diagnostic: with momentum drawn from "
    "1 - log-U[0.01, 1] it spans two decades more than lr alone."
)
CAVEATS = (
    "- Scale: a few dozen trials per cell instead of 200, hundreds of steps instead of training to "
    "convergence, hidden sizes up to the tens; small effects are beyond the power of these tests.",
    "- Stand-ins: the TIMIT and IAM Online stand-ins are unidirectional, frame-wise and small (the paper "
    "used bidirectional LSTMs, and CTC for IAM Online); only JSB Chorales is the paper's own task, rebuilt "
    "from music21's corpus (split 60/20/20 by piece, not the paper's split).",
    "- The paper's verdicts are taken from its abstract and conclusions as summarised in the project's "
    "research notes, not re-read from its figures.",
    "- Multiple comparisons: each task has up to seven tests against V at p < 0.05, uncorrected, over all "
    "trials and again over the best 10 %: about one significant result in twenty is expected by chance, "
    "and the best-10 % tests rest on a handful of trials a side (10 %, at least 3).",
    "- FGR is not built in jlstm and is missing here.",
)


def _setup(summary: dict) -> list[str]:
    cfg, budget = summary["config"], summary["budget"]
    sp, sz = cfg["space"], cfg["sizes"]
    m1, m2 = sp["one_minus_momentum"]
    n_pairs = sum(len(i["variants"]) for i in summary["tasks"].values())
    tasks = "; ".join(f"`{t}` for {i['stands_for']} ({i['metric']})" for t, i in summary["tasks"].items())
    return [
        f"- {cfg['trials']} random-search trials per variant and task, the same samples for every variant "
        f"(paper: 200): {budget['trials_trained']} trained networks over {n_pairs} (task, variant) pairs.",
        f"- Each trial: one LSTM layer and a dense output layer, {cfg['steps']} steps of SGD with Nesterov "
        f"momentum, batch {sz['batch_size']}, windows of {sz['seq_len']} frames; validation and test every "
        f"{cfg['eval_every']} steps; the test metric is taken at the best validation point (early stopping).",
        f"- Search space: learning rate log-U[{sp['lr'][0]:g}, {sp['lr'][1]:g}] (paper: log-U[1e-6, 1e-2] "
        f"on a summed loss with batch 1), hidden size log-U[{sp['hidden'][0]}, {sp['hidden'][1]}] bucketed "
        f"into {sp['buckets']} sizes (paper: log-U[20, 200]), momentum 1 - log-U[{m1:g}, {m2:g}] and input "
        f"noise std U[{sp['noise'][0]:g}, {sp['noise'][1]:g}] (as the paper).",
        "- Tests: Welch's t-test (scipy.stats.ttest_ind, equal_var=False) of each variant's test metrics "
        "against V's, over all trials and over the best 10 % by validation metric; significant at p < 0.05.",
        f"- Tasks: {tasks}. See `jlstm/app/odyssey/tasks.py` for how each stands in.",
    ]


def _throughput(tp: dict | None) -> list[str]:
    if not tp:
        return []
    median = tp.get("median_relative_difference")
    diff = (f"median relative difference {median:.1e}, " if median is not None else "") + "largest "
    return [
        f"- Throughput ({tp['task']}, {tp['variant']}, H = {tp['hidden']}, {tp['trials']} trials of "
        f"{tp['steps']} steps, compilation excluded): {tp['vmapped_trials_per_second']:.2f} trials/s "
        f"vmapped against {tp['sequential_trials_per_second']:.2f} one at a time ({tp['speedup']:.1f}x; "
        f"{tp['vmapped_trial_steps_per_second']:.0f} against "
        f"{tp['sequential_trial_steps_per_second']:.0f} trial-steps/s). Test metrics, vmapped against alone: "
        f"{diff}{tp['max_relative_difference']:.1e} (rounding, grown by chaotic high-learning-rate trials)."
    ]


def header(summary: dict) -> list[str]:
    """Title, command, wall time, the cells and the setup."""
    cfg, b = summary["config"], summary["budget"]
    cmd = "jlstm odyssey --quick" if cfg["quick"] else "jlstm odyssey"
    return [
        "# LSTM: A Search Space Odyssey, reproduced at small scale",
        "",
        f"Command: `{cmd} --out {cfg['out']}`. Wall time {b['wall_seconds'] / 60:.1f} min "
        f"({b['compile_seconds'] / 60:.1f} min compiling, {b['run_seconds'] / 60:.1f} min training, "
        f"{b['trial_steps_per_second']:.0f} trial-steps/s while training).",
        "",
        f"Cells: {summary['cells']}",
        "",
        "## Setup",
        "",
        *_setup(summary),
        *_throughput(summary["throughput"]),
        "",
    ]


def _verdicts(rows: list[dict], variants) -> str:
    return "; ".join(
        f"{r['variant']} on {r['task']} ({r['paper_task']}): {r['ours']} (best 10 %: {r['ours_top10']})"
        for r in rows
        if r["variant"] in variants
    )


def _variant_points(summary: dict) -> list[str]:
    rows = summary["paper_comparison"]
    lines = []
    for claim, variants in VARIANT_FINDINGS:
        if variants is None:
            better = [f"{r['variant']} on {r['task']}" for r in rows if r["ours"] == "better"]
            top = [f"{r['variant']} on {r['task']}" for r in rows if r["ours_top10"] == "better"]
            word = "disagree" if better else "agree"
            ours = (
                ("significantly better: " + ", ".join(better)) if better else "none is significantly better"
            )
            ours += " (best 10 %: " + (", ".join(top) + " better" if top else "none better") + ")"
        else:
            mine = [r for r in rows if r["variant"] in variants]
            if not mine:
                continue
            n_agree = sum(r["agree"] for r in mine)
            word = "agree" if n_agree == len(mine) else "partly agree" if n_agree else "disagree"
            ours = _verdicts(mine, variants)
        lines.append(f"- **Paper:** {claim} **Here:** {ours}. **{word.capitalize()}.**")
    return lines


def _hyper_points(summary: dict) -> list[str]:
    lines = []
    for task in summary["tasks"]:
        mine = [r for r in summary["hyperparameter_findings"] if r["task"] == task]
        said = "; ".join(f"{r['finding']}: {'agree' if r['agree'] else 'disagree'}" for r in mine)
        lines.append(f"- {task} ({mine[0]['ours']}): {said}.")
    return lines


def comparison(summary: dict) -> list[str]:
    """The findings, point by point, and the per-(variant, task) table of verdicts."""
    lines = [
        "## The paper's findings beside ours",
        "",
        f'A verdict is the all-trials Welch test against {BASELINE}; "best 10 %" the same on the best '
        "tenth of the trials by validation metric.",
        "",
    ]
    lines += _variant_points(summary)
    lines += ["", HYPER_INTRO, ""]
    lines += _hyper_points(summary)
    lines += [
        "",
        "| variant | task | paper's task | paper | here | here, best 10 % | agree |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["paper_comparison"]:
        lines.append(
            f"| {r['variant']} | {r['task']} | {r['paper_task']} | {r['paper']} | {r['ours']} | "
            f"{r['ours_top10']} | {'yes' if r['agree'] else 'no'} |"
        )
    return lines + ["", "## Caveats", "", *CAVEATS, ""]
