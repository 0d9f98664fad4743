"""The reference backend walks time without the O(T^2) backward of per-step indexing."""

from collections import Counter

import pytest
import torch

import lstmkit
from lstmkit.backends import reference


def graph_node_names(tensor: torch.Tensor) -> Counter:
    """How many autograd nodes of each kind produced ``tensor``."""
    seen, stack, names = set(), [tensor.grad_fn], Counter()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names[type(node).__name__] += 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("variant", ["standard", "peephole", "fgr"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["padded", "lengths"])
def test_no_per_step_indexing_in_graph(variant, use_lengths):
    # x[t] per step would add one SelectBackward per step whose backward writes a zero-filled
    # [T, B, G*H] gradient each time: T^2 work. unbind/stack add one node each.
    T = 12
    module = lstmkit.LSTM(3, 4, variant=variant)
    cell = module.cells[0][0]
    x = torch.randn(T, 2, 3, requires_grad=True)
    state = tuple(torch.zeros(2, size) for size in cell.state_sizes())
    lengths = torch.tensor([T, 5]) if use_lengths else None
    y, _ = reference.run_layer(cell, module.layer_params(0, 0), x, state, lengths=lengths)
    names = graph_node_names(y)
    assert names["SelectBackward0"] == 0 and names["IndexBackward0"] == 0, names
    assert names["UnbindBackward0"] <= 2, names  # the projection (and the lengths mask)
    assert names["StackBackward0"] == 1, names
