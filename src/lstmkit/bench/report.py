"""What the benchmark shows: the speed targets, the tables (rich and markdown) and the JSON.

A table is built once as headers and rows of strings; ``print_tables`` and ``markdown`` only
lay it out. Times are medians in ms; ratios compare medians of runs timed in the same rounds.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

import lstmkit
from lstmkit.backends import registry
from lstmkit.bench.contenders import LENGTHS, MODES, PACKED, PEER, Size
from lstmkit.bench.runner import REFERENCE, BenchResult, Timing
from lstmkit.io import publish

# the project's speed targets (ratios to the peer: torch.nn.LSTM, torch.nn.GRU for the GRU)
TRAIN_TIME = 1.25  # cpu training time / torch.nn's, every variant ...
STANDARD_TIME = 1.0  # ... but standard, which must match torch.nn.LSTM
INFER_TIME = 1.5  # cpu inference time / torch.nn's
REFERENCE_SPEEDUP, REFERENCE_MAX_H = 3.0, 256  # reference / cpu in training, at H <= 256
PACKED_SPEEDUP = 2.0  # torch.nn on the PackedSequence / cpu with the same lengths
MEMORY = 1.2  # cpu peak training memory / torch.nn's
MODE_TITLES = {"train": "training (forward + backward)", "infer": "inference (no_grad)"}
NOTES = [
    "Times: ms, median of the timed runs after the warm-up; each row's contenders run in "
    "interleaved rounds. cpu/nn and the targets compare with the peer in the same row "
    "(torch.nn.LSTM's standard cell; torch.nn.GRU for gru).",
    "torch.nn packed: torch.nn on a PackedSequence with lengths uniform in [T/2, T] (timed "
    "with the first variant of its family at each size, reused in the other rows); cpu "
    "lengths: lstmkit cpu on the padded batch with the same lengths=; len/pad = cpu lengths "
    "/ cpu; pk/len = torch.nn packed / cpu lengths.",
    "GF/s: GEMM flops only, forward 2*T*B*(G*H*D + R*H*H + (F*H)^2) (G gate blocks, R with "
    "recurrence, F fgr feedback gates; GRU 2*T*B*(3H*D + 3H*H)), training 3x forward; "
    "compare with the GEMM ceiling table (torch.matmul measured in the same run).",
    "MiB: rise of the resident set during one training step after a warm-up (kernel high-water "
    "mark, fresh subprocess per size; counts torch, engine and oneDNN memory alike).",
    f"targets: time = cpu/nn <= {TRAIN_TIME} in training ({STANDARD_TIME} for standard), "
    f"<= {INFER_TIME} in inference; fgr is judged as GF/s >= nn's / {TRAIN_TIME} (/ "
    f"{INFER_TIME}) instead; {REFERENCE_SPEEDUP:g}x = ref/cpu >= {REFERENCE_SPEEDUP:g} in "
    f"training at H <= {REFERENCE_MAX_H}; len = cpu lengths <= cpu; pack = pk/len >= "
    f"{PACKED_SPEEDUP:g}; mem = cpu MiB <= {MEMORY} x nn's. ? = not measured.",
]


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]]


# ------------------------------------------------------------------------------ targets
def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def targets(
    result: BenchResult, threads: int, size: Size, variant: str, mode: str
) -> dict[str, bool | None]:
    """Each applicable speed target: True met, False missed, None not measured."""

    def ms(contender: str) -> float | None:
        timing = result.timing(threads, size, variant, mode, contender)
        return timing.median_ms if timing else None

    def gflops(contender: str) -> float | None:
        timing = result.timing(threads, size, variant, mode, contender)
        return timing.gflops_per_s if timing else None

    train = mode == "train"
    time_limit = TRAIN_TIME if train else INFER_TIME
    met: dict[str, bool | None] = {}
    if variant == "fgr":  # nine more recurrent matrices: judged by throughput, not time
        met["GF/s"] = _at_most(_ratio(gflops(PEER), gflops("cpu")), time_limit)
    else:
        limit = STANDARD_TIME if train and variant == "standard" else time_limit
        met["time"] = _at_most(_ratio(ms("cpu"), ms(PEER)), limit)
    if train and size[3] <= REFERENCE_MAX_H:
        speedup = _ratio(ms(REFERENCE), ms("cpu"))
        met[f"{REFERENCE_SPEEDUP:g}x"] = None if speedup is None else speedup >= REFERENCE_SPEEDUP
    met["len"] = _at_most(_ratio(ms(LENGTHS), ms("cpu")), 1.0)
    packed = _ratio(ms(PACKED), ms(LENGTHS))
    met["pack"] = None if packed is None else packed >= PACKED_SPEEDUP
    if train:
        cpu_mib = _mib(result, threads, size, variant, "cpu")
        met["mem"] = _at_most(_ratio(cpu_mib, _mib(result, threads, size, variant, PEER)), MEMORY)
    return met


def _mib(result: BenchResult, threads: int, size: Size, variant: str, contender: str):
    peak = result.peak(threads, size, variant, contender)
    return None if peak is None or peak.kib is None else peak.kib / 1024


def _targets_text(met: dict[str, bool | None]) -> str:
    marks = {True: "✓", False: "✗", None: "?"}
    return " ".join(f"{name}{marks[value]}" for name, value in met.items())


# ------------------------------------------------------------------------------ tables
def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def sections(result: BenchResult) -> list[Section]:
    """Per thread count: per mode a table of times and one of ratios; then the GEMM ceilings."""
    out = []
    for threads in result.threads:
        plural = "s" if threads > 1 else ""
        for mode in MODES:
            title = f"{MODE_TITLES[mode]}, {threads} thread{plural}"
            times = Section(f"{title}: ms, {_repeats_text(result)}", _time_headers(result), [])
            ratios = Section(f"{title}: ratios, GEMM GFLOP/s, targets", _ratio_headers(mode), [])
            for size in result.config.sizes:
                for variant in result.config.variants:
                    case = _Case(result, threads, size, variant, mode)
                    times.rows.append(case.time_row())
                    ratios.rows.append(case.ratio_row())
            out += [times, ratios]
        out.append(_ceiling_section(result, threads, plural))
    return out


def _time_headers(result: BenchResult) -> list[str]:
    return ["T,B,D,H", "variant", *result.contenders]


def _ratio_headers(mode: str) -> list[str]:
    headers = ["T,B,D,H", "variant", "cpu/nn", "ref/cpu", "len/pad", "pk/len", "GF/s cpu"]
    headers.append("GF/s nn")
    if mode == "train":
        headers += ["MiB cpu", "MiB nn", "mem x"]
    return [*headers, "targets"]


def _ceiling_section(result: BenchResult, threads: int, plural: str) -> Section:
    rows = []
    for ceiling in result.ceilings:
        if ceiling.threads != threads:
            continue
        m, k, n = ceiling.shape
        role = "large square" if ceiling.size is None else "recurrent GEMM [B,H]@[H,4H] at "
        role += "" if ceiling.size is None else ",".join(map(str, ceiling.size))
        rows.append([f"[{m},{k}]@[{k},{n}]", role, _number(ceiling.median, 0)])
    title = f"GEMM ceiling, {threads} thread{plural}: torch.matmul fp32, {_repeats_text(result)}"
    return Section(title, ["shape", "what", "GFLOP/s"], rows)


def _repeats_text(result: BenchResult) -> str:
    config = result.config
    text = f"median of {config.repeats} after {config.warmup} warm-up"
    if config.repeats_of(REFERENCE) != config.repeats:
        text += f" (reference: median of {config.repeats_of(REFERENCE)})"
    if config.skip_reference_above is not None:
        text += f"; reference skipped at T > {config.skip_reference_above}"
    return text


@dataclass
class _Case:
    """The rows of one thread count, size, variant and mode."""

    result: BenchResult
    threads: int
    size: Size
    variant: str
    mode: str

    def _timing(self, contender: str) -> Timing | None:
        return self.result.timing(self.threads, self.size, self.variant, self.mode, contender)

    def ms(self, contender: str) -> float | None:
        found = self._timing(contender)
        return found.median_ms if found else None

    def gflops(self, contender: str) -> float | None:
        found = self._timing(contender)
        return found.gflops_per_s if found else None

    def _head(self) -> list[str]:
        return [",".join(map(str, self.size)), self.variant]

    def time_row(self) -> list[str]:
        return self._head() + [_number(self.ms(c)) for c in self.result.contenders]

    def ratio_row(self) -> list[str]:
        ms = self.ms
        row = self._head()
        row += [_number(_ratio(ms("cpu"), ms(PEER)), 2), _number(_ratio(ms(REFERENCE), ms("cpu")))]
        row.append(_number(_ratio(ms(LENGTHS), ms("cpu")), 2))
        row.append(_number(_ratio(ms(PACKED), ms(LENGTHS))))
        row += [_number(self.gflops("cpu"), 0), _number(self.gflops(PEER), 0)]
        if self.mode == "train":
            args = (self.result, self.threads, self.size, self.variant)
            cpu_mib, peer_mib = _mib(*args, "cpu"), _mib(*args, PEER)
            row += [_number(cpu_mib), _number(peer_mib), _number(_ratio(cpu_mib, peer_mib), 2)]
        met = targets(self.result, self.threads, self.size, self.variant, self.mode)
        return [*row, _targets_text(met)]


def notes(result: BenchResult) -> list[str]:
    """The lines printed under the tables: what each column means, and what was left out."""
    lines = list(NOTES)
    if "torch" not in result.contenders:
        lines.append(
            f"The registry has no 'torch' backend (its choices: {', '.join(registry.CHOICES)})."
        )
    skipped: dict[str, dict[str, str]] = {}  # contender -> variant -> why
    for timing in result.timings:
        if timing.skipped:
            skipped.setdefault(timing.contender, {}).setdefault(timing.variant, timing.skipped)
    for contender, reasons in skipped.items():
        first = next(iter(reasons.values()))
        example = "e.g. " if len(set(reasons.values())) > 1 else ""
        lines.append(f"{contender} not timed for {', '.join(reasons)}: {example}{first}")
    for error in sorted({p.error for p in result.peaks if p.error}):
        lines.append(f"peak memory not measured: {error}")
    lines.append(f"The whole run took {result.seconds / 60:.1f} min.")
    return lines


def print_tables(result: BenchResult, console: Console) -> None:
    """The tables, each on a console wide enough for it (a narrow one would cut numbers)."""
    for section in sections(result):
        table = Table(*section.headers, title=section.title, title_justify="left")
        for row in section.rows:
            table.add_row(*row)
        needed = Measurement.get(console, console.options.update_width(1000), table).maximum
        wide = console if needed <= console.width else Console(width=needed, file=console.file)
        wide.print(table)
    for line in notes(result):
        console.print(line, markup=False)


def markdown(result: BenchResult) -> str:
    parts = []
    for section in sections(result):
        parts.append(f"### {section.title}\n")
        parts.append("| " + " | ".join(section.headers) + " |")
        parts.append("|" + "---|" * len(section.headers))
        parts += ["| " + " | ".join(row) + " |" for row in section.rows]
        parts.append("")
    parts += [f"- {line}" for line in notes(result)]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ files
def machine_info() -> dict:
    """What the numbers depend on: versions, threads, the CPU."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "torch_default_threads": torch.get_num_threads(),  # the runs set their own
        "torch": torch.__version__,
        "lstmkit": lstmkit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "backends": list(registry.CHOICES),
    }


def to_json(result: BenchResult) -> dict:
    """Every run's time, the medians, GFLOP/s, memory, targets, config and machine."""
    timings = []
    for t in result.timings:
        record = asdict(t)
        record |= {"median_ms": t.median_ms, "gflops_per_s": t.gflops_per_s}
        timings.append(record)
    ceilings = [asdict(c) | {"median": c.median} for c in result.ceilings]
    met = [
        {
            "threads": threads,
            "size": list(size),
            "variant": variant,
            "mode": mode,
            "targets": targets(result, threads, size, variant, mode),
        }
        for threads in result.threads
        for size in result.config.sizes
        for variant in result.config.variants
        for mode in MODES
    ]
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": asdict(result.config) | {"threads": list(result.threads)},
        "contenders": list(result.contenders),
        "seconds": result.seconds,
        "timings": timings,
        "gemm_ceilings": ceilings,
        "peak_memory_kib": [asdict(p) for p in result.peaks],
        "targets": met,
        "notes": notes(result),
    }


def default_json_path() -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("benchmarks") / "results" / f"speed-{stamp}.json"


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        publish(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(result: BenchResult, path: Path) -> Path:
    return write_text(path, json.dumps(to_json(result), indent=1) + "\n")
