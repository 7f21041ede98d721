"""Train one task, as `jlstm train TASK` does; outputs under runs/<task>/.

Run:  python experiments/train.py digits [--steps N] [--seed S] [--optimizer adam] ...
      (the same options as `jlstm train`; see `python experiments/train.py --help`)
"""

import sys

from jlstm.app.cli import app

if __name__ == "__main__":
    sys.exit(app(["train", *sys.argv[1:]]))
