"""Greff et al.'s "LSTM: A Search Space Odyssey" (arXiv 1503.04069) at small scale, with vmapped trials.

``run(Config())`` trains every variant of ``search.VARIANTS`` on every task of ``tasks.TASK_NAMES`` over
the same random-search trials (``population``: a bucket of trials in one jitted, vmapped call), tests
each variant against V with Welch's t-test and writes ``summary.json``, ``trials.csv``, box plots and
``report.md`` (``report``, ``plots``, ``text``). ``quick_config()`` is the smoke test of CI.
"""

from jlstm.app.odyssey import report
from jlstm.app.odyssey.jsb import MissingExtra
from jlstm.app.odyssey.study import Config, from_options, quick_config, run

__all__ = ["Config", "MissingExtra", "from_options", "quick_config", "report", "run"]
