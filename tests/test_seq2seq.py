"""lstmkit.Seq2Seq, the dates task and ``lstmkit translate``: small, quick cases."""

from __future__ import annotations

import itertools
import json
import random
from datetime import date, datetime

import pytest
import torch
import typer
from typer.testing import CliRunner

import lstmkit
from helpers import assert_close
from lstmkit.data.dates import FORMATS, date_pairs, ordinal, write_date
from lstmkit.tasks.seq2seq import BOS, EOS, TARGET_SPECIALS, Seq2Seq, evaluate

TINY = {"hidden_size": 12, "embedding_dim": 6, "epochs": 1, "batch_size": 4, "backend": "reference"}


def random_pairs(count: int, seed: int, reverse: bool = True) -> list[tuple[str, str]]:
    generator = random.Random(seed)
    pairs = []
    for _ in range(count):
        text = "".join(generator.choice("abcd") for _ in range(generator.randint(1, 5)))
        pairs.append((text, text[::-1] if reverse else text))
    return pairs


def manual_lstm(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step of the standard LSTM, torch.nn.LSTM's gate order (i, f, g, o)."""
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def manual_loss(model: Seq2Seq, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """Teacher-forced cross-entropy summed over every target step of every pair, one pair at
    a time, from the parameters (unidirectional, one layer, general attention)."""
    p = dict(model.net.named_parameters())
    total = 0.0
    for source, target in pairs:
        ids = [model.source_chars.index(ch) + 1 for ch in source]
        wanted = [model.target_chars.index(ch) + TARGET_SPECIALS for ch in target] + [EOS]
        h = c = torch.zeros(model.settings.hidden_size, dtype=torch.float64)
        outputs = []
        for token in ids:
            x = p["source_embedding.weight"][token]
            h, c = manual_lstm(
                x,
                h,
                c,
                *(p[f"encoder.{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
            )
            outputs.append(h)
        memory = torch.stack(outputs) @ p["memory.weight"].T  # [S, H]
        h = torch.tanh(h @ p["bridge_h.weight"].T + p["bridge_h.bias"])
        c = torch.tanh(c @ p["bridge_c.weight"].T + p["bridge_c.bias"])
        feed = torch.zeros_like(h)
        for previous, right in zip([BOS, *wanted[:-1]], wanted, strict=True):
            x = torch.cat([p["target_embedding.weight"][previous], feed])
            h, c = manual_lstm(
                x,
                h,
                c,
                *(p[f"decoder.{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
            )
            weights = torch.softmax(memory @ (p["score_weight.weight"] @ h), dim=0)  # [S]
            context = weights @ memory
            feed = torch.tanh(p["combine.weight"] @ torch.cat([context, h]) + p["combine.bias"])
            logits = p["output.weight"] @ feed + p["output.bias"]
            total = total - torch.log_softmax(logits, dim=0)[right]
    return total


def test_teacher_forced_loss_matches_a_step_by_step_computation():
    pairs = random_pairs(6, seed=1)
    model = Seq2Seq(**TINY, bidirectional=False, attention="general").fit(pairs)
    model.net.double()
    fresh = random_pairs(5, seed=2)  # different lengths: the batch is padded
    batched = model.loss([s for s, _ in fresh], [t for _, t in fresh])
    tokens = sum(len(t) + 1 for _, t in fresh)
    expected = manual_loss(model, fresh) / tokens
    assert_close("loss", expected, batched)
    parameters = list(model.net.parameters())
    for name, want, got in zip(
        [n for n, _ in model.net.named_parameters()],
        torch.autograd.grad(expected, parameters),
        torch.autograd.grad(batched, parameters),
        strict=True,
    ):
        assert_close(f"d{name}", want, got)


@pytest.mark.parametrize("attention", ["dot", "general", "bahdanau"])
def test_attention_weights_sum_to_one_and_skip_padding(attention):
    pairs = random_pairs(8, seed=3)
    model = Seq2Seq(**TINY, attention=attention).fit(pairs)
    sources = ["abcda", "b", "cab"]
    source, lengths = model._sources(sources, "sources")
    previous = torch.tensor([[BOS, BOS, BOS], [4, 5, 3], [3, 3, 4]])
    _, weights = model.net(source, lengths, previous)  # [T, B, S]
    assert_close("sums", torch.ones(3, 3), weights.sum(-1))
    for b, length in enumerate(lengths.tolist()):
        assert (weights[:, b, length:] == 0).all()
        assert (weights[:, b, :length] > 0).all()


@pytest.mark.parametrize("attention", ["dot", "bahdanau"])
def test_beam_one_equals_greedy(attention):
    model = Seq2Seq(**TINY, attention=attention).fit(random_pairs(20, seed=4))
    sources = [s for s, _ in random_pairs(12, seed=5)]
    greedy = model.translate(sources, beam=1)
    assert greedy == [model._beam(model.net, text, 1) for text in sources]


def test_wide_beam_finds_the_best_length_normalised_sequence():
    """With a beam wider than every hypothesis, beam search is exhaustive: compare it with
    scoring every target over a 2-character vocabulary one by one."""
    pairs = [("ab", "ab"), ("ba", "b"), ("aa", "ba")]
    model = Seq2Seq(**TINY, max_extra=1, length_penalty=0.7).fit(pairs)
    net, alpha = model.net, model.settings.length_penalty
    # 3 steps at most (longest target 2, max_extra 1): lengths 0..2 end with EOS, length 3
    # is cut by the limit and competes unfinished
    candidates = [""] + ["".join(c) for n in (1, 2, 3) for c in itertools.product("ab", repeat=n)]
    for source in ("ab", "ba", "aab"):
        best, best_score = None, float("-inf")
        for candidate in candidates:
            ids = [model.target_chars.index(ch) + TARGET_SPECIALS for ch in candidate]
            ids += [EOS] * (len(candidate) < 3)
            memory, mask, state = net.encode(*model._sources([source], "source"))
            feed, previous, total = memory.new_zeros(1, memory.shape[2]), BOS, 0.0
            with torch.no_grad():
                for token in ids:
                    logits, state, feed, _ = net.step(
                        torch.tensor([previous]), state, feed, memory, mask
                    )
                    total += torch.log_softmax(model._decodable(logits), -1)[0, token].item()
                    previous = token
            if total / len(ids) ** alpha > best_score:
                best, best_score = candidate, total / len(ids) ** alpha
        assert model.translate([source], beam=20) == [best]


def test_learns_to_reverse():
    train = random_pairs(300, seed=6)
    test = [p for p in random_pairs(60, seed=7) if p not in train]
    settings = TINY | {"hidden_size": 32, "epochs": 12, "batch_size": 16, "lr": 1e-2}
    model = Seq2Seq(**settings).fit(train)
    assert model.history[-1] < model.history[0] / 4
    assert model.score(test)["exact_match"] >= 0.9
    assert model.score(test, beam=3)["exact_match"] >= 0.9


def test_save_load_round_trip(tmp_path):
    model = Seq2Seq(**TINY, attention="bahdanau", num_layers=2).fit(random_pairs(20, seed=8))
    path = model.save(tmp_path / "s2s.safetensors")
    loaded = Seq2Seq.load(path)
    assert type(lstmkit.load(path)) is Seq2Seq  # lstmkit.load knows an estimator's file
    sources = [s for s, _ in random_pairs(6, seed=9)]
    assert loaded.translate(sources, beam=2) == model.translate(sources, beam=2)
    assert_close("loss", model.loss(sources, sources), loaded.loss(sources, sources))
    assert loaded.settings == model.settings
    assert [p.name for p in tmp_path.iterdir()] == ["s2s.safetensors"]  # no temporary left


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="attention must be one of"):
        Seq2Seq(attention="cosine")
    with pytest.raises(ValueError, match="variant must be one of"):
        Seq2Seq(variant="nope")
    with pytest.raises(ValueError, match="hidden_size must be an integer >= 1"):
        Seq2Seq(hidden_size=0)
    with pytest.raises(ValueError, match="non-empty list"):
        Seq2Seq().fit([])
    with pytest.raises(ValueError, match=r"pairs' targets\[1\] must be a non-empty string"):
        Seq2Seq(**TINY).fit([("ab", "ba"), ("a", "")])
    with pytest.raises(ValueError, match="must be a \\(source, target\\) pair"):
        Seq2Seq(**TINY).fit([("ab", "ba", "x")])
    with pytest.raises(RuntimeError, match="not fitted"):
        Seq2Seq().translate(["ab"])
    model = Seq2Seq(**TINY).fit(random_pairs(8, seed=10))
    with pytest.raises(ValueError, match=r"sources\[1\] 'az' has characters the model never saw"):
        model.translate(["ab", "az"])
    with pytest.raises(ValueError, match="at least one string"):
        model.translate([])
    with pytest.raises(TypeError, match="list of strings"):
        model.translate("abc")
    with pytest.raises(ValueError, match="beam must be an integer >= 1"):
        model.translate(["ab"], beam=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Seq2Seq.load(tmp_path / "missing.safetensors")


def test_evaluate_against_hand_counts():
    scores = evaluate(["2001-01-01", "1999-12-31"], ["2001-01-01", "1999-12-30"])
    assert scores["exact_match"] == 0.5
    assert 0 < scores["bleu"] < 100
    assert evaluate(["1987-03-03"], ["1987-03-03"])["bleu"] == pytest.approx(100.0)


def test_dates_are_right_and_disjoint():
    train, test = date_pairs(300, 100, seed=3)
    assert (train, test) == date_pairs(300, 100, seed=3)
    assert not {t for _, t in train} & {t for _, t in test}
    assert len({t for _, t in train}) == 300
    for _, target in train + test:
        assert date.fromisoformat(target).isoformat() == target
    assert [ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"
    ]  # fmt: skip
    # formats that strptime reads (English names in the C locale) give the date back
    readable = {"month day, year": "%B %d, %Y", "mm/dd/yy": "%m/%d/%y", "dd.mm.yyyy": "%d.%m.%Y"}
    for day in (date(1987, 3, 3), date(2068, 12, 31), date(1969, 1, 9), date(2000, 2, 29)):
        for style, pattern in readable.items():
            assert datetime.strptime(write_date(day, style), pattern).date() == day
        assert write_date(day, "Wkd d Mon yyyy").startswith(day.strftime("%a"))
    assert len(FORMATS) >= 10
    with pytest.raises(ValueError, match="n_test must be an integer >= 1"):
        date_pairs(10, 0)


def test_cli_translate(tmp_path):
    from lstmkit.cli.seq2seq import translate

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(translate)
    app.command("other")(lambda: None)  # two commands: the name is needed, as in lstmkit
    runner = CliRunner(env={"COLUMNS": "200"})
    arguments = "translate --pairs 400 --test 10 --epochs 1 --hidden-size 8 --beam 2"
    result = runner.invoke(app, [*arguments.split(), "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("nearest neighbour", "Seq2Seq greedy", "Seq2Seq beam 2"):
        assert name in result.output
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [row["method"] for row in rows][1:] == ["Seq2Seq greedy", "Seq2Seq beam 2"]
    assert all(0 <= row["exact_match"] <= 1 for row in rows)
    assert Seq2Seq.load(tmp_path / "model.safetensors").settings.hidden_size == 8
    bad = runner.invoke(app, ["translate", "--task", "numbers"])
    assert bad.exit_code == 2 and "--task must be one of" in bad.output
