"""The embedded Reber grammar (H&S 1997, Exp. 1) and its continual form (Gers et al. 2000)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lstmkit.tasks.papers.reber import (
    INDEX,
    SYMBOLS,
    ReberNet,
    ReberStream,
    cell_state_trace,
    embedded_reber_strings,
    encode,
    is_embedded_reber,
    legal_next,
    paper_init,
    predictions_correct,
    run_continual,
    run_embedded,
    stream_test,
)

# Hand-written: B T (B T X S E) T E, and the legal successors of each symbol.
STRING = "BTBTXSETE"
LEGAL = ["TP", "B", "TP", "SX", "SX", "E", "T", "E", "B"]


def test_legal_next_of_a_hand_made_string():
    assert legal_next(STRING) == [frozenset(symbols) for symbols in LEGAL]
    assert is_embedded_reber(STRING)
    # two strings in a row: the second is parsed like the first
    assert legal_next(STRING + STRING) == legal_next(STRING) * 2


@pytest.mark.parametrize(
    "text",
    [
        "BTBTXSEPE",  # the outer symbol repeated wrongly
        "BTBTSETE",  # S in state 2 loops back; E cannot follow
        "BTBPVVETEE",  # a symbol after the end... of a single string
        "BTBPVVET",  # cut off
        "BTBTXSETEBTBTXSETE",  # two strings
        "",
        "TBTXSETE",
    ],
)
def test_illegal_strings_are_rejected(text):
    assert not is_embedded_reber(text)


def test_legal_next_names_the_bad_symbol():
    with pytest.raises(ValueError, match="position 7 expected one of T, got 'P'"):
        legal_next("BTBTXSEPE")
    with pytest.raises(TypeError, match="text must be a str"):
        legal_next(["B"])


def test_generator_is_seeded_and_legal():
    first = embedded_reber_strings(200, torch.Generator().manual_seed(3))
    again = embedded_reber_strings(200, torch.Generator().manual_seed(3))
    assert first == again
    assert all(is_embedded_reber(text) for text in first)
    assert all(text[1] == text[-2] for text in first)  # the long-lag symbol
    # every choice of the grammar is taken sometimes: both outer symbols, all inner symbols
    assert {text[1] for text in first} == {"T", "P"}
    assert set("".join(first)) == set(SYMBOLS)
    with pytest.raises(ValueError, match="count must be a positive integer"):
        embedded_reber_strings(0, torch.Generator())


def test_encode_single_strings_and_streams():
    inputs, targets, legal, mask = encode([STRING, "BPBPVVEPE"], drop_last=True)
    assert inputs.shape == (8, 2, 7) and legal.shape == (8, 2, 7)
    assert mask[:, 0].all() and mask[:, 1].sum() == 8
    assert targets[:, 0].tolist() == [INDEX[s] for s in STRING[1:]]
    for step, symbols in enumerate(LEGAL[:-1]):
        assert {SYMBOLS[i] for i in legal[step, 0].nonzero()[:, 0].tolist()} == set(symbols)
    assert inputs[:, 0].argmax(-1).tolist() == [INDEX[s] for s in STRING[:-1]]
    # in a stream the last E is followed by the next string's B
    _, targets, legal, mask = encode([STRING], drop_last=False)
    assert targets[-1, 0] == INDEX["B"] and legal[-1, 0].sum() == 1 and mask.all()
    with pytest.raises(ValueError, match="texts must hold at least one"):
        encode([], drop_last=True)


def test_criterion_needs_the_legal_symbols_on_top():
    legal = torch.tensor([[True, True, False, False], [False, False, True, False]])
    right = torch.tensor([[0.4, 0.5, 0.1, 0.0], [0.1, 0.2, 0.6, 0.1]])
    assert predictions_correct(right, legal).tolist() == [True, True]
    wrong = torch.tensor([[0.4, 0.05, 0.1, 0.0], [0.1, 0.7, 0.6, 0.1]])
    assert predictions_correct(wrong, legal).tolist() == [False, False]
    tie = torch.tensor([[0.4, 0.3, 0.3, 0.0], [0.1, 0.2, 0.6, 0.1]])
    assert predictions_correct(tie, legal).tolist() == [False, True]
    with pytest.raises(ValueError, match="same shape"):
        predictions_correct(right, legal[:, :3])


def test_stream_chunks_join_into_the_stream():
    stream = ReberStream(2, torch.Generator().manual_seed(1))
    chunks = [stream.take(7) for _ in range(6)]
    inputs = torch.cat([tensors[0] for tensors, _ in chunks])  # [42, 2, 7]
    targets = torch.cat([tensors[1] for tensors, _ in chunks])
    for column in range(2):
        text = "".join(SYMBOLS[i] for i in inputs[:, column].argmax(-1).tolist())
        following = text[1:] + SYMBOLS[int(targets[-1, column])]
        assert following == "".join(SYMBOLS[i] for i in targets[:, column].tolist())
        legal_next(text)  # the chunks join into a legal stream (raises otherwise)
    ended = sum(count for _, count in chunks)
    e_then_b = sum(
        int(((inputs[:, c].argmax(-1) == INDEX["E"]) & (targets[:, c] == INDEX["B"])).sum())
        for c in range(2)
    )
    assert ended == e_then_b


class _Oracle(nn.Module):
    """Outputs the legal set of a given encoding, wrong at chosen (step, column)s."""

    def __init__(self, legal: Tensor, wrong_at: list[tuple[int, int]]) -> None:
        super().__init__()
        self.logits = legal.float().clone()
        for step, column in wrong_at:
            self.logits[step, column] = 1.0 - self.logits[step, column]

    def forward(self, inputs: Tensor, state=None):
        return self.logits[: inputs.shape[0], : inputs.shape[1]], state


def test_stream_test_counts_strings_before_the_first_error():
    strings = embedded_reber_strings(6, torch.Generator().manual_seed(2))
    streams = [strings[:3], strings[3:]]
    _, _, legal, _ = encode(["".join(s) for s in streams], drop_last=False)
    # an error in stream 0's third string (at its second symbol), none in stream 1
    step = len(strings[0]) + len(strings[1]) + 1
    before, wrong, steps = stream_test(_Oracle(legal, [(step, 0)]), streams, reset=False)
    assert before == [2, 3] and wrong == 1 and steps == sum(map(len, strings))
    # with resets every string is its own row, in stream order: the 2nd of stream 1 fails
    _, _, legal, _ = encode(strings, drop_last=False)
    before, wrong, _ = stream_test(_Oracle(legal, [(0, 4)]), streams, reset=True)
    assert before == [3, 1] and wrong == 1


def test_paper_init_and_cell_trace():
    net = ReberNet(6, "lstm1997")
    paper_init(net)
    bias = net.lstm.bias_ih_l0 + net.lstm.bias_hh_l0  # gates i, g, o
    assert bias[:6].tolist() == [-1.0, -1.0, -2.0, -2.0, -3.0, -3.0]
    assert net.lstm.weight_hh_l0.abs().max() <= 0.2
    trace = cell_state_trace(net, embedded_reber_strings(5, torch.Generator()), chunk=4)
    assert trace.dim() == 1 and len(trace) > 0 and (trace >= 0).all()


def test_bad_protocol_is_refused(tmp_path):
    with pytest.raises(ValueError, match="protocol must be one of 'modern'"):
        run_continual(quick=True, output_dir=tmp_path, seeds=1, protocol="paper")
    with pytest.raises(ValueError, match="protocol must be one of"):
        run_embedded(quick=True, output_dir=tmp_path, seeds=1, protocol="online")


@pytest.mark.slow  # the fixed 512-string check and 1,000 fresh test strings: ~5 s here
def test_tiny_embedded_run_writes_rows_and_files(tmp_path):
    result = run_embedded(quick=True, output_dir=tmp_path, seeds=1, budget=32)
    assert len(result.rows) == 1 and result.rows[0][3] in ("0/1", "1/1")
    assert result.files["curves"] == str(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_tiny_continual_run_writes_rows_and_files(tmp_path):
    result = run_continual(quick=True, output_dir=tmp_path, seeds=1, budget=20, test_strings=5)
    assert [row[1] for row in result.rows] == [
        "standard (forget gate), no resets",
        "lstm1997, no resets",
    ]
    assert all(row[3] in ("0/1", "1/1") for row in result.rows)
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "cell_states.png").stat().st_size > 0
