"""``lstmkit bench`` (lstmkit/bench, lstmkit/cli/bench.py): a tiny run through the command
writes JSON and tables; the GFLOP/s formula agrees with torch's own flop counter on the
reference loop; the memory probe sees a known allocation; the targets follow the project's
thresholds; bad options are clear errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import lstmkit
from lstmkit.bench import BenchConfig, BenchResult, flops, parse_sizes, parse_variants
from lstmkit.bench.contenders import LENGTHS, PACKED, PEER
from lstmkit.bench.memory import measure_in_subprocess, peak_kib
from lstmkit.bench.report import targets
from lstmkit.bench.runner import Peak, Timing
from lstmkit.cli.bench import bench

TINY = (5, 2, 3, 4)  # T, B, D, H


def make_app() -> typer.Typer:
    """``bench`` registered as the main command registers it: ``app.command()(bench)``."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """A group, so that ``bench`` is a subcommand as in ``lstmkit``."""

    app.command()(bench)
    return app


def invoke(*args: str):
    return CliRunner().invoke(make_app(), ["bench", *args])


# --------------------------------------------------------------------------- the command
def test_tiny_run_writes_json_markdown_and_tables(tmp_path: Path):
    out, md = tmp_path / "result.json", tmp_path / "table.md"
    result = invoke(
        "--sizes", "5,2,3,4", "--variants", "standard,cifg,gru", "--repeats", "2",
        "--reference-repeats", "1", "--threads", "1", "--square", "64", "--no-memory",
        "--json", str(out), "--markdown", str(md),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    expected_keys = {"created", "machine", "config", "contenders", "timings", "gemm_ceilings"}
    assert expected_keys <= data.keys()
    assert {"cpu_model", "torch", "torch_default_threads", "logical_cpus"} <= data["machine"].keys()
    assert data["config"]["threads"] == [1]

    contenders = set(data["contenders"])
    assert {PEER, PACKED, "reference", "cpu", "auto", LENGTHS} <= contenders
    seen = set()
    for timing in data["timings"]:
        seen.add((timing["variant"], timing["mode"], timing["contender"]))
        if timing["skipped"]:
            assert not timing["times_ms"]
            continue
        runs = 1 if timing["contender"] == "reference" else 2
        assert len(timing["times_ms"]) == runs
        assert timing["median_ms"] > 0 and timing["gflops_per_s"] > 0
    # every contender is accounted for (timed or skipped with a reason) in every case
    variants = ("standard", "cifg", "gru")
    assert seen == {(v, m, c) for v in variants for m in ("train", "infer") for c in contenders}
    # torch.nn.LSTM on packed input is timed once per size, with the first LSTM variant
    packed = {(t["variant"], t["mode"]): t for t in data["timings"] if t["contender"] == PACKED}
    for mode in ("train", "infer"):
        assert packed["cifg", mode]["shared_from"] == "standard"
        assert packed["cifg", mode]["times_ms"] == packed["standard", mode]["times_ms"]
        assert packed["gru", mode]["shared_from"] is None
    ceilings = {tuple(c["shape"]) for c in data["gemm_ceilings"]}
    assert ceilings == {(64, 64, 64), (2, 4, 16)}  # the square, and [B, H] @ [H, 4H]
    assert {t["variant"] for t in data["targets"]} == set(variants)

    text = md.read_text()
    assert "| T,B,D,H | variant | torch.nn |" in text
    assert "| 5,2,3,4 | gru |" in text
    assert "training (forward + backward), 1 thread" in result.output
    assert "inference (no_grad), 1 thread" in result.output
    assert "GEMM ceiling" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--sizes", "5,2,3"], ["sizes", "T,B,D,H", "'5,2,3'"]),
        (["--sizes", "5,2,x,4"], ["sizes", "'5,2,x,4'"]),
        (["--sizes", "5,0,3,4"], ["sizes", "'5,0,3,4'"]),
        (["--variants", "standard,peepole"], ["variants", "'peepole'", "did you mean 'peephole'"]),
        (["--threads", "1,two"], ["threads", "'1,two'"]),
    ],
    ids=["three-numbers", "not-a-number", "zero", "unknown-variant", "bad-threads"],
)
def test_bad_options_are_clear_errors(args: list[str], words: list[str]):
    result = invoke(*args, "--no-memory")
    assert result.exit_code == 2
    assert result.output.startswith("error:"), result.output
    for word in words:
        assert word in result.output


def test_repeats_below_one_is_refused():
    result = invoke("--repeats", "0")
    assert result.exit_code == 2
    assert "--repeats" in result.output
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        BenchConfig(repeats=0)


def test_parsers_read_lists():
    assert parse_sizes("100,32,64,128; 50,128,256,512") == ((100, 32, 64, 128), (50, 128, 256, 512))
    assert parse_variants("fgr, gru,fgr") == ("fgr", "gru")
    assert set(parse_variants("all")) == set(lstmkit.variants()) | {"gru"}


# --------------------------------------------------------------------------- GFLOP/s formula
def counted_flops(variant: str, train: bool) -> int:
    """torch's flop counter over lstmkit's reference loop: every matmul it runs, fwd (+ bwd)."""
    T, B, D, H = TINY
    if variant == "gru":
        module = lstmkit.GRU(D, H, backend="reference")
    else:
        module = lstmkit.LSTM(D, H, variant=variant, backend="reference")
    x = torch.randn(T, B, D, requires_grad=train)
    sizes = module.cells[0][0].state_sizes()
    # initial states that require grad: backward then differentiates every product's input
    states = [torch.randn(1, B, size, requires_grad=train) for size in sizes]
    hx = states[0] if variant == "gru" else tuple(states)
    with FlopCounterMode(display=False) as counter:
        out = module(x, hx)[0]
        if train:
            out.sum().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("variant", ["standard", "fgr", "peephole_full", "cifg", "nog", "gru"])
@pytest.mark.parametrize("mode", ["infer", "train"])
def test_flop_formula_matches_torch_flop_counter(variant: str, mode: str):
    T, B, D, H = TINY
    assert flops(variant, mode, T * B, D, H) == counted_flops(variant, mode == "train")


def test_flop_formula_by_hand():
    T, B, D, H = TINY
    rows = T * B
    assert flops("standard", "infer", rows, D, H) == 2 * rows * (4 * H * D + 4 * H * H)
    # fgr: 4 blocks; i, f, o feed back through a [3H, 3H] matrix
    assert flops("fgr", "infer", rows, D, H) == 2 * rows * (4 * H * D + 4 * H * H + 9 * H * H)
    assert flops("fgr", "train", rows, D, H) == 3 * flops("fgr", "infer", rows, D, H)


# --------------------------------------------------------------------------- peak memory
def test_peak_memory_sees_a_known_allocation():
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the probe reads Linux's /proc")
    mib = 64

    def allocate_and_free() -> None:
        block = torch.ones(mib * 2**20 // 4)  # touched: every page becomes resident
        del block

    peak = peak_kib(allocate_and_free) / 1024
    assert mib * 0.98 <= peak <= mib + 16


@pytest.mark.slow
def test_memory_subprocess_measures_each_job():
    jobs = [("standard", PEER), ("standard", "cpu"), ("gru", LENGTHS)]
    answers = measure_in_subprocess((50, 8, 16, 64), jobs, seed=0, threads=1)
    assert set(answers) == set(jobs)
    for value in answers.values():
        assert isinstance(value, int) and value >= 0, value


# --------------------------------------------------------------------------- targets
def fake_result(variant: str, ms: dict[tuple[str, str], float], peaks: dict[str, int]):
    """A result with given medians (one run each) and peaks, at a size with H = 256."""
    size = (10, 4, 8, 256)
    config = BenchConfig(sizes=(size,), variants=(variant,), memory=bool(peaks))
    result = BenchResult(config, (1,), (PEER, PACKED, "reference", "cpu", LENGTHS))
    for (mode, contender), value in ms.items():
        cell = "standard" if contender in (PEER, PACKED) else variant  # what runs the flops
        fl = flops(cell, mode, 40, 8, 256)
        result.timings.append(Timing(1, size, variant, mode, contender, [value], fl))
    for contender, kib in peaks.items():
        owner = "standard" if contender == PEER else variant
        result.peaks.append(Peak(1, size, owner, contender, kib))
    return result, size


@pytest.mark.parametrize(
    ("variant", "cpu_ms", "met"),
    [("peephole", 12.0, True), ("peephole", 13.0, False), ("standard", 10.5, False)],
)
def test_training_time_target(variant: str, cpu_ms: float, met: bool):
    ms = {("train", PEER): 10.0, ("train", "cpu"): cpu_ms}
    result, size = fake_result(variant, ms, {})
    assert targets(result, 1, size, variant, "train")["time"] is met


def test_other_targets_follow_the_project_targets():
    ms = {
        ("train", PEER): 10.0, ("train", "cpu"): 9.0, ("train", "reference"): 26.0,
        ("train", PACKED): 17.0, ("train", LENGTHS): 8.0,
    }  # fmt: skip
    result, size = fake_result("peephole", ms, {PEER: 1000, "cpu": 1300})
    met = targets(result, 1, size, "peephole", "train")
    # ref/cpu 2.9 < 3; lengths 8 <= 9 padded; packed 17 / 8 >= 2; memory 1.3x > 1.2x
    assert met == {"time": True, "3x": False, "len": True, "pack": True, "mem": False}
    # inference has no reference or memory target, and nothing measured reads as None
    assert targets(result, 1, size, "peephole", "infer") == {
        "time": None, "len": None, "pack": None,
    }  # fmt: skip


def test_fgr_is_judged_by_throughput():
    # fgr runs more flops than torch.nn's standard cell: it may take longer in proportion,
    # with the same 1.25 allowance on its GFLOP/s
    ratio = flops("fgr", "train", 40, 8, 256) / flops("standard", "train", 40, 8, 256)
    assert ratio > 2
    ms = {("train", PEER): 10.0, ("train", "cpu"): 10.0 * ratio * 1.2}
    result, size = fake_result("fgr", ms, {})
    assert targets(result, 1, size, "fgr", "train")["GF/s"] is True
    ms[("train", "cpu")] = 10.0 * ratio * 1.3
    result, size = fake_result("fgr", ms, {})
    assert targets(result, 1, size, "fgr", "train")["GF/s"] is False
