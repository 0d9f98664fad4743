import os

import pytest
import torch

# The commands print rich tables that the tests read; rich fixes a console's width when the
# console is made (at import), from COLUMNS: wide enough that no cell is cut, on any terminal.
os.environ["COLUMNS"] = "200"

# pytest runs on 2 workers (-n 2) on a 2-core machine: one thread each, or tiny ops
# oversubscribe the cores and run ten times slower.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state, so a failure replays."""
    torch.manual_seed(0)
