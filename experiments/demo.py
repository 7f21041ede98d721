"""The tour: the worked example, a gradient check, a short digits run and a report in runs/demo/.

Run:  python experiments/demo.py   (= `jlstm demo`)
"""

import sys

from jlstm.app.cli import app

if __name__ == "__main__":
    sys.exit(app(["demo", *sys.argv[1:]]))
