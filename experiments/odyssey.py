"""Greff et al.'s "LSTM: A Search Space Odyssey" at small scale: the LSTM variants of jlstm (V, NIG,
NFG, NOG, NIAF, NOAF, NP, CIFG; hand-written backward) x three tasks x a random search, the trials of a
bucket trained together under vmap, Welch's t-tests against V. Writes runs/odyssey/{summary.json,
trials.csv, odyssey_<task>.png, odyssey_lr.png, report.md}.

Run:  python experiments/odyssey.py [--quick] [--out runs/odyssey]   (= `jlstm odyssey`; about an hour,
      a minute or two with --quick; needs pip install 'jlstm[odyssey]')
"""

import sys

from jlstm.app.cli import app

if __name__ == "__main__":
    sys.exit(app(["odyssey", *sys.argv[1:]]))
