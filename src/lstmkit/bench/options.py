"""The command line's text options, parsed into ``BenchConfig`` fields with clear errors."""

from __future__ import annotations

from lstmkit._checks import unknown_name
from lstmkit.bench.contenders import Size
from lstmkit.bench.runner import ALL_VARIANTS, SIZES


def parse_sizes(text: str) -> tuple[Size, ...]:
    """``"100,32,64,128;50,128,256,512"`` -> ((100, 32, 64, 128), (50, 128, 256, 512)).

    ``"all"`` (or nothing) gives the five standard sizes.
    """
    if text.strip().lower() in ("", "all"):
        return SIZES
    sizes = []
    for group in filter(None, (part.strip() for part in text.split(";"))):
        parts = [part.strip() for part in group.split(",")]
        if len(parts) != 4 or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise ValueError(
                "sizes must be groups of four positive ints T,B,D,H separated by ';' "
                f"(e.g. '100,32,64,128;50,128,256,512'), got {group!r} in {text!r}"
            )
        sizes.append(tuple(int(part) for part in parts))
    if not sizes:
        raise ValueError(f"sizes must name at least one T,B,D,H group, got {text!r}")
    return tuple(sizes)  # type: ignore[return-value]


def parse_variants(text: str) -> tuple[str, ...]:
    """``"standard,fgr,gru"`` -> ("standard", "fgr", "gru"); ``"all"`` gives every variant."""
    if text.strip().lower() in ("", "all"):
        return ALL_VARIANTS
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in ALL_VARIANTS:
            raise unknown_name("variants", name, ALL_VARIANTS)
    return tuple(dict.fromkeys(names))


def parse_threads(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2); nothing gives () (torch's current thread count)."""
    counts = [part.strip() for part in text.split(",") if part.strip()]
    for part in counts:
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"threads must be positive ints separated by ',', got {text!r}")
    return tuple(int(part) for part in counts)
