"""Formal-language and recall tasks of the xLSTM paper's synthetic experiments, seeded.

**State tracking** (Deletang et al. 2023, "Neural Networks and the Chomsky Hierarchy", the
regular tasks; Beck et al. 2024 use them to show that sLSTM tracks state and a Transformer
does not): a sequence of tokens, one label for the whole sequence, to be read off after the
last token. Every task here is a regular language, so a finite automaton solves it at any
length; a model that learned the automaton from lengths up to 40 keeps its accuracy at 256.

| task | tokens | label | classes |
|---|---|---|---|
| ``parity`` | bits ``0``/``1`` | number of 1s mod 2 | 2 |
| ``even_pairs`` | bits ``0``/``1`` | number of unequal neighbours ("01", "10") mod 2 | 2 |
| ``cycle_navigation`` | ``0`` left, ``1`` stay, ``2`` right | end position on a 5-cycle | 5 |
| ``modular_arithmetic`` | ``0..4``, ``5`` +, ``6`` -, ``7`` * | the value mod 5 | 5 |

Chance is one over the number of classes (the labels are uniform or nearly so); the xLSTM
paper reports accuracy scaled so that chance is 0 and perfect is 1 (``scaled_accuracy``).

**Multi-Query Associative Recall** (MQAR; Arora et al. 2023, "Zoology"; Beck et al. 2024,
Fig. 5): key-value pairs, then the keys again in another order; at each key's second
appearance the model must output its value. ``mqar`` returns per-position targets.

Every generator takes a ``torch.Generator``, so a seed gives the same data on every run.
Tokens are ``int64`` and batch first, ``[B, T]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lstmkit._checks import check_positive_int, unknown_name

IGNORE_INDEX = -100  # cross-entropy's ignore index: positions without a target

# modular arithmetic's vocabulary: the residues 0..MODULUS-1, then the three operators
MODULUS = 5
PLUS, MINUS, TIMES = MODULUS, MODULUS + 1, MODULUS + 2
CYCLE_LENGTH = 5

Sampler = Callable[[int, int, "torch.Generator | None"], tuple[Tensor, Tensor]]


# --------------------------------------------------------------------------- the four tasks
# Each task is a sampler of uniform tokens and a function that labels every prefix of a
# token sequence ``[B, T]`` -> ``[B, T]``: the label the task gives the sequence that ends
# at step t (``IGNORE_INDEX`` where that prefix is not a sequence of the task). A sample's
# label is the last column.
def parity_labels(bits: Tensor) -> Tensor:
    """Parity check: (number of 1s) mod 2 of each prefix of a bit string."""
    return bits.cumsum(dim=1) % 2


def even_pairs_labels(bits: Tensor) -> Tensor:
    """Even pairs: (number of unequal neighbours, "01" or "10") mod 2 of each prefix, which is
    1 exactly when the prefix's first and last bits differ (Deletang et al.: 0 = even)."""
    return (bits != bits[:, :1]).long()


def cycle_navigation_labels(moves: Tensor) -> Tensor:
    """Cycle navigation: the position on a cycle of 5 after each move, from position 0; a
    token moves by token - 1 (0 left, 1 stay, 2 right)."""
    return (moves - 1).cumsum(dim=1) % CYCLE_LENGTH


def modular_arithmetic_labels(tokens: Tensor) -> Tensor:
    """Modular arithmetic: the value mod 5 of each prefix that ends on a residue.

    Tokens alternate residue (0..4), operator (5 +, 6 -, 7 *), residue, ...; ``*`` binds
    before ``+`` and ``-``. Kept as (sum of finished terms, current term): ``*`` multiplies
    the term, ``+``/``-`` adds it to the sum and starts a new term of +-r. Prefixes that end
    on an operator get ``IGNORE_INDEX``.
    """
    residues, operators = tokens[:, 0::2], tokens[:, 1::2]  # [B, N+1], [B, N]
    labels = torch.full_like(tokens, IGNORE_INDEX)
    total = torch.zeros(tokens.shape[0], dtype=torch.long)
    term = residues[:, 0].clone()
    labels[:, 0] = term
    for k in range(operators.shape[1]):
        r, op = residues[:, k + 1], operators[:, k]
        times = op == TIMES
        total = torch.where(times, total, (total + term) % MODULUS)
        signed = torch.where(op == MINUS, (MODULUS - r) % MODULUS, r)
        term = torch.where(times, (term * r) % MODULUS, signed)
        labels[:, 2 * k + 2] = (total + term) % MODULUS
    return labels


def parity(
    batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Parity check: tokens ``[B, length]``, uniform bits; label ``[B]`` = (number of 1s) mod 2."""
    bits = _uniform(2, batch_size, length, generator)
    return bits, parity_labels(bits)[:, -1]


def even_pairs(
    batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Even pairs: tokens ``[B, length]``, uniform bits; label ``[B]`` = (number of t with
    x_t != x_{t+1}) mod 2 (1 when the first and last bits differ)."""
    bits = _uniform(2, batch_size, length, generator)
    return bits, even_pairs_labels(bits)[:, -1]


def cycle_navigation(
    batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Cycle navigation: tokens ``[B, length]`` in {0, 1, 2}, uniform (move by token - 1);
    label ``[B]`` = the final position on a cycle of 5 from 0, in 0..4."""
    moves = _uniform(3, batch_size, length, generator)
    return moves, cycle_navigation_labels(moves)[:, -1]


def modular_arithmetic(
    batch_size: int, length: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Modular arithmetic without brackets: the value of ``a op a op ... a`` mod 5.

    Residues a in 0..4 (tokens 0..4) alternate with operators + - * (tokens 5, 6, 7), all
    uniform; ``*`` binds before ``+`` and ``-`` (the usual precedence, as Deletang et al.:
    ``1 + 2 * 3 = 2``, ``1 - 1 - 1 = 4``). An expression has an odd number of tokens, so an
    even ``length`` gives ``length - 1`` tokens. Label ``[B]`` in 0..4.
    """
    check_positive_int("length", length)
    length -= 1 - length % 2  # odd: number, (operator, number)*
    residues = _uniform(MODULUS, batch_size, length // 2 + 1, generator)  # [B, N+1]
    operators = PLUS + _uniform(3, batch_size, length // 2, generator)  # [B, N]
    tokens = torch.empty(batch_size, length, dtype=torch.long)
    tokens[:, 0::2], tokens[:, 1::2] = residues, operators
    return tokens, modular_arithmetic_labels(tokens)[:, -1]


def _uniform(high: int, batch_size: int, length: int, generator: torch.Generator | None) -> Tensor:
    check_positive_int("batch_size", batch_size)
    check_positive_int("length", length, allow_zero=True)
    return torch.randint(0, high, (batch_size, length), generator=generator)


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class FormalTask:
    """One state-tracking task: its sampler, vocabulary and number of classes."""

    name: str
    sampler: Sampler
    prefix_labels: Callable[[Tensor], Tensor]  # tokens [B, T] -> each prefix's label [B, T]
    vocab_size: int  # token ids are 0..vocab_size-1
    num_classes: int
    min_length: int = 1  # the shortest sequence the sampler makes

    @property
    def chance(self) -> float:
        """The accuracy of guessing: 1 / num_classes."""
        return 1.0 / self.num_classes

    def batch(
        self, batch_size: int, length: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``batch_size`` sequences of one length: tokens ``[B, T]``, labels ``[B]``.

        ``modular_arithmetic`` rounds an even length down to the odd one below it.
        """
        if check_positive_int("length", length) < self.min_length:
            raise ValueError(f"length must be >= {self.min_length} for {self.name}, got {length}")
        return self.sampler(batch_size, length, generator)

    def dataset(
        self,
        size: int,
        max_length: int,
        min_length: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``size`` sequences, each of a length drawn uniformly from [min_length, max_length].

        Returns tokens ``[size, max_length]`` padded after each sequence's end with the token
        ``vocab_size`` (outside the vocabulary), lengths ``[size]`` (modular arithmetic's
        lengths are odd) and labels ``[size]``, the label of each sequence's last token.
        """
        low = self.min_length if min_length is None else min_length
        check_positive_int("size", size)
        if not self.min_length <= low <= check_positive_int("max_length", max_length):
            raise ValueError(
                f"min_length must be in [{self.min_length}, max_length={max_length}] for "
                f"{self.name}, got {low}"
            )
        drawn = torch.randint(low, max_length + 1, (size,), generator=generator)
        tokens = torch.full((size, max_length), self.vocab_size, dtype=torch.long)
        lengths = torch.empty(size, dtype=torch.long)
        labels = torch.empty(size, dtype=torch.long)
        for length in drawn.unique().tolist():  # one sampler call per distinct length
            rows = (drawn == length).nonzero().squeeze(1)
            x, y = self.sampler(len(rows), length, generator)
            tokens[rows, : x.shape[1]] = x
            lengths[rows], labels[rows] = x.shape[1], y
        return tokens, lengths, labels


TASKS: dict[str, FormalTask] = {
    "parity": FormalTask("parity", parity, parity_labels, vocab_size=2, num_classes=2),
    "even_pairs": FormalTask(
        "even_pairs", even_pairs, even_pairs_labels, vocab_size=2, num_classes=2
    ),
    "cycle_navigation": FormalTask(
        "cycle_navigation",
        cycle_navigation,
        cycle_navigation_labels,
        vocab_size=3,
        num_classes=CYCLE_LENGTH,
    ),
    "modular_arithmetic": FormalTask(
        "modular_arithmetic",
        modular_arithmetic,
        modular_arithmetic_labels,
        vocab_size=MODULUS + 3,
        num_classes=MODULUS,
    ),
}


def formal_task(name: str) -> FormalTask:
    """The task called ``name`` (one of ``TASKS``)."""
    if name not in TASKS:
        raise unknown_name("task", name, TASKS)
    return TASKS[name]


def scaled_accuracy(accuracy: float, chance: float) -> float:
    """``(accuracy - chance) / (1 - chance)``: 0 at chance, 1 when perfect (negative below
    chance), the xLSTM paper's measure for the formal languages."""
    if not 0.0 <= chance < 1.0:
        raise ValueError(f"chance must be in [0, 1), got {chance}")
    return (accuracy - chance) / (1.0 - chance)


# --------------------------------------------------------------------------- MQAR
def mqar(
    batch_size: int,
    context_length: int,
    num_pairs: int,
    vocab_size: int = 256,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Multi-Query Associative Recall: recall the value stored under each queried key.

    A sequence of ``context_length`` tokens: first ``num_pairs`` pairs ``k_1 v_1 ... k_N v_N``
    (distinct keys, values drawn independently), then filler tokens with every key inserted
    once more, in random order at random positions after the pairs. The target at a key's
    second position is its value; every other target is ``IGNORE_INDEX``.

    Vocabulary: token 0 is the filler, keys are 1..K and values K+1..vocab_size-1 with
    K = (vocab_size - 1) // 2. (Arora et al. fill the gaps with random tokens and place the
    queries at power-law-distributed distances, with a vocabulary of 8192; here the filler
    is one token and the positions are uniform, which keeps the task the same: the answer
    is only in the pairs.)

    Returns tokens ``[B, T]`` and targets ``[B, T]`` (int64).
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("num_pairs", num_pairs)
    if check_positive_int("context_length", context_length) < 3 * num_pairs:
        raise ValueError(
            f"context_length must be >= 3 * num_pairs ({3 * num_pairs}), got {context_length}"
        )
    keys_available = (check_positive_int("vocab_size", vocab_size) - 1) // 2
    if keys_available < num_pairs:
        raise ValueError(
            f"vocab_size must be >= {2 * num_pairs + 1} for {num_pairs} distinct keys, "
            f"got {vocab_size}"
        )
    B, T, N = batch_size, context_length, num_pairs
    # distinct keys: the first N of a random permutation of 1..K, per row
    keys = 1 + torch.rand(B, keys_available, generator=generator).argsort(dim=1)[:, :N]
    values = torch.randint(1 + keys_available, 1 + 2 * keys_available, (B, N), generator=generator)
    tokens = torch.zeros(B, T, dtype=torch.long)
    tokens[:, 0 : 2 * N : 2], tokens[:, 1 : 2 * N : 2] = keys, values
    # query positions: N distinct places after the pairs; query order: a permutation
    places = 2 * N + torch.rand(B, T - 2 * N, generator=generator).argsort(dim=1)[:, :N]
    order = torch.rand(B, N, generator=generator).argsort(dim=1)
    rows = torch.arange(B)[:, None]
    tokens[rows, places] = keys.gather(1, order)
    targets = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    targets[rows, places] = values.gather(1, order)
    return tokens, targets
