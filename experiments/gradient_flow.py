"""The gradient-flow study: how the gradient reaching step t decays with distance to the loss.

LSTMs with forget-gate bias 0, 1 and 3 against a tanh RNN of the same size, on the adding problem
(T = 100), at initialisation and after training. Writes runs/gradflow/{gradflow.csv, gradflow.png,
summary.json}; docs/gradflow.png is a copy of the plot.

Run:  python experiments/gradient_flow.py [--steps 1500] [--out runs/gradflow]   (= `jlstm gradflow`)
"""

import sys

from jlstm.app.cli import app

if __name__ == "__main__":
    sys.exit(app(["gradflow", *sys.argv[1:]]))
