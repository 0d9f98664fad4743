"""Built-in datasets as LightningDataModules, generated from the seed (nothing downloads).

Batches are dicts, batch first as DataLoader collates them: ``x`` ``[B, T, D]`` floats or
``[B, T]`` tokens, ``y`` targets, and where sequences differ in length ``lengths`` ``[B]``
(plus ``labels``/``label_lengths`` for CTC). The text stream yields consecutive windows
``[B, T]`` of B parallel streams, in order, so a language model can carry its state across
batches; ``resets`` ``[B, T]`` marks where a document starts (the state is zeroed there).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lstmkit.data import (
    CharVocabulary,
    adding_problem,
    batchify,
    ctc_symbols,
    delayed_echo,
    read_text,
)
from lstmkit.training.config import DataConfig

ECHO_VOCAB = 8
CTC_SYMBOLS = 5


@dataclass(frozen=True)
class DataInfo:
    """What the model needs to know about the data."""

    input_size: int  # features, or vocabulary size for tokens
    output_size: int
    tokens: bool
    vocabulary: str | None = None  # the characters of a text vocabulary, in id order


class DictDataset(Dataset):
    """Tensors sharing their first (sample) dim, served as dicts."""

    def __init__(self, **tensors: Tensor) -> None:
        self.tensors = tensors
        self.size = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


class ShardedOrder(Sampler[int]):
    """The sample order of an epoch, and this process's share of it.

    The order depends only on (seed, epoch), so a resumed run sees the same batches; Lightning
    calls ``set_epoch``. Under DDP, process r of W takes every W-th sample of that order, so
    the W batches of a step together are exactly the batch one process with W times the batch
    size would see (the order is padded to a multiple of W by repeating its start).
    """

    def __init__(self, size: int, seed: int, shuffle: bool, rank: int = 0, world: int = 1):
        self.size, self.seed, self.shuffle, self.rank, self.world = size, seed, shuffle, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world)

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        order += order[: len(self) * self.world - self.size]
        return iter(order[self.rank :: self.world])


class TextWindows(Dataset):
    """Window i of every stream: ``x``, ``y`` (next character) and ``resets``, ``[B, T]``."""

    def __init__(self, streams: Tensor, starts: Tensor, length: int) -> None:
        self.streams, self.starts, self.length = streams, starts, length  # [N, B]

    def __len__(self) -> int:
        return (self.streams.shape[0] - 1) // self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        window = slice(index * self.length, (index + 1) * self.length)
        shifted = slice(window.start + 1, window.stop + 1)
        return {
            "x": self.streams[window].T,
            "y": self.streams[shifted].T,
            "resets": self.starts[window].T,
        }


class BuiltinDataModule(pl.LightningDataModule):
    """train / val / test splits of a built-in dataset, from ``DataConfig`` and a seed."""

    def __init__(self, config: DataConfig, seed: int) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        self.splits: dict[str, Dataset] = {}
        self.info = self._describe()

    def _describe(self) -> DataInfo:
        name = self.config.name
        if name == "adding":
            return DataInfo(2, 1, tokens=False)
        if name == "echo":
            return DataInfo(ECHO_VOCAB, ECHO_VOCAB, tokens=True)
        if name == "ctc_symbols":
            return DataInfo(CTC_SYMBOLS, CTC_SYMBOLS + 1, tokens=False)
        self.text = read_text(self.config.path)
        vocabulary = CharVocabulary(self.text)
        return DataInfo(len(vocabulary), len(vocabulary), True, vocabulary.characters)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        c = self.config
        sizes = {"train": c.train_size, "val": c.val_size, "test": c.test_size}
        if c.name == "text":
            self.splits = self._text_splits(sizes)
            return
        for offset, (split, size) in enumerate(sizes.items()):
            generator = torch.Generator().manual_seed(self.seed * 1_000 + offset)
            self.splits[split] = self._generate(size, generator)

    def _generate(self, size: int, generator: torch.Generator) -> DictDataset:
        c = self.config
        if c.name == "adding":
            x, y = adding_problem(size, c.length, generator)
            return DictDataset(x=x.transpose(0, 1), y=y)
        if c.name == "echo":
            x, y = delayed_echo(size, c.length, c.delay, ECHO_VOCAB, generator)
            return DictDataset(x=x.T, y=y.T)
        frames, lengths, labels, label_lengths = ctc_symbols(
            size, c.length, CTC_SYMBOLS, generator=generator
        )
        return DictDataset(
            x=frames.transpose(0, 1), lengths=lengths, labels=labels, label_lengths=label_lengths
        )

    def _text_splits(self, sizes: dict[str, int]) -> dict[str, Dataset]:
        """Contiguous train / val / test thirds of the text in proportion to the sizes."""
        vocabulary = CharVocabulary(self.info.vocabulary)
        stream = vocabulary.encode(self.text)
        starts = torch.zeros_like(stream, dtype=torch.bool)
        starts[0] = True
        starts[1:] = stream[:-1] == vocabulary.index.get("\n", -1)  # a line starts a document
        total = sum(sizes.values())
        bounds = torch.tensor([0, *sizes.values()]).cumsum(0) * len(stream) // total
        rank, world = self._shard()
        splits = {}
        for (split, _), start, stop in zip(sizes.items(), bounds[:-1], bounds[1:], strict=True):
            streams = batchify(stream[start:stop], self.config.batch_size)
            resets = batchify(starts[start:stop], self.config.batch_size)
            # DDP shards the parallel streams, so every rank keeps contiguous text
            splits[split] = TextWindows(
                streams[:, rank::world], resets[:, rank::world], self.config.length
            )
            if len(splits[split]) == 0:
                raise ValueError(
                    f"the {split} split holds {stop - start} characters: too few for one window "
                    f"of data.length={self.config.length} steps on data.batch_size="
                    f"{self.config.batch_size} streams; use a longer text or smaller values"
                )
        return splits

    def _shard(self) -> tuple[int, int]:
        """(rank, world size) of this process; (0, 1) outside a distributed run."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        dataset = self.splits[split]
        if isinstance(dataset, TextWindows):  # already batched, in stream order
            return DataLoader(dataset, batch_size=None, shuffle=False)
        shuffle = train and self.config.shuffle
        sampler = ShardedOrder(len(dataset), self.seed, shuffle, *self._shard())
        return DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
