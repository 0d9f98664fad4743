"""lstmkit's backends against torch.nn.LSTM: the same as ``lstmkit bench`` (see its --help).

python benchmarks/speed.py [--sizes '100,32,64,128'] [--variants standard,gru] [--repeats 5]
"""

import typer

from lstmkit.cli.bench import bench

if __name__ == "__main__":
    typer.run(bench)
