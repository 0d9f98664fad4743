"""``lstmkit.LanguageModel``: a character- or byte-level recurrent language model.

The network is an embedding, a stack of recurrent layers (any lstmkit LSTM variant, or
``"gru"``) and a linear softmax over the next token, whose weight may be tied to the
embedding's (Press & Wolf 2017; then ``embedding_dim`` must equal the layer's output size).
It is a ``lstmkit.SequenceNet`` with token inputs and a per-step head.

Training reads one long text as ``batch_size`` parallel streams (each a contiguous slice) and
takes one optimiser step per chunk of ``bptt`` steps of every stream; the state runs on from
chunk to chunk, detached between them (truncated BPTT, ``lstmkit.training.tbptt``).

``bits_per_char(text)`` predicts characters 2..N of ``text`` each from all characters before
it (one stream, the state carried through), and divides the total bits by N - 1. At byte level
the bits of every UTF-8 byte of those characters are summed, so the figure is still per
character and compares with character-level models. ``generate`` feeds the prompt once and
then one sampled token at a time, carrying the state.

``KneserNeyBaseline`` is the n-gram baseline of the same protocol (nltk's interpolated
Kneser-Ney smoothing over characters).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

import lstmkit
from lstmkit.data.text import CharVocabulary, batchify
from lstmkit.io import load_weights, read, write
from lstmkit.training.tbptt import chunks, detach_state

Level = Literal["char", "byte"]
KIND = "LanguageModel"
BYTES = 256
EVAL_CHUNK = 2048  # steps per forward when scoring or priming: bounds memory on long texts


# ----------------------------------------------------------------------------- arguments
def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_sampling(temperature: object, top_k: object) -> None:
    """Temperature a finite number > 0; top_k None or an integer >= 1."""
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None:
        _positive_int("top_k", top_k)


def sample_next(
    logits: Tensor,  # [V]
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """One token id drawn from ``softmax(logits / temperature)`` restricted to the ``top_k``
    most likely tokens (all tokens when None or larger than V). ``top_k=1`` is the argmax."""
    scaled = logits.double() / temperature
    if top_k is not None and top_k < scaled.numel():
        kept = scaled.topk(top_k).indices
        if top_k == 1:
            return int(kept[0])  # no draw: greedy decoding, whatever the generator
        masked = torch.full_like(scaled, float("-inf"))
        masked[kept] = scaled[kept]
        scaled = masked
    probabilities = scaled.softmax(-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))


# ----------------------------------------------------------------------------- the estimator
@dataclass(frozen=True)
class LanguageModelSettings:
    """Everything besides weights and vocabulary that defines and trains a LanguageModel."""

    level: Level = "char"
    variant: str = "standard"  # a name from lstmkit.variants(), or "gru"
    hidden_size: int = 256
    num_layers: int = 1
    embedding_dim: int = 64
    tie_weights: bool = False
    dropout: float = 0.0  # between stacked layers
    proj_size: int = 0
    batch_size: int = 32
    bptt: int = 100  # steps per truncated-BPTT chunk
    lr: float = 3e-3
    grad_clip: float = 1.0
    epochs: int = 1
    steps: int | None = None  # optimiser steps; None: ``epochs`` passes over the text
    seed: int = 0
    backend: str = "auto"


class LanguageModel:
    """A recurrent language model over characters (``level="char"``) or UTF-8 bytes.

    Example: ``lm = LanguageModel(hidden_size=64, steps=20).fit(text)``, then
    ``lm.bits_per_char(held_out_text)`` and ``lm.generate("And ", 100, temperature=0.8)``.
    """

    def __init__(self, **settings) -> None:
        self.settings = LanguageModelSettings(**settings)
        s = self.settings
        if s.level not in ("char", "byte"):
            raise ValueError(f"level must be 'char' or 'byte', got {s.level!r}")
        for name in ("hidden_size", "num_layers", "embedding_dim", "batch_size", "bptt", "epochs"):
            _positive_int(name, getattr(s, name))
        if s.steps is not None:
            _positive_int("steps", s.steps)
        if not (s.variant == "gru" or s.variant in lstmkit.variants()):
            raise ValueError(
                f"variant must be 'gru' or one of {sorted(lstmkit.variants())}, got {s.variant!r}"
            )
        output = s.proj_size or s.hidden_size
        if s.tie_weights and s.embedding_dim != output:
            raise ValueError(
                f"tie_weights=True needs embedding_dim == the recurrent output size ({output}), "
                f"got embedding_dim={s.embedding_dim}"
            )
        self.characters: str | None = None  # the char-level vocabulary, set by fit
        self.net: lstmkit.SequenceNet | None = None
        self.history: list[dict] = []  # per logged step: step, seconds, train bits per token

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        if self.settings.level == "byte":
            return BYTES
        self._check_fitted()
        return len(self.characters)

    def encode(self, text: str, argument: str = "text") -> Tensor:
        """Token ids ``[N]`` of ``text``; characters the model never saw are an error."""
        if not isinstance(text, str):
            raise TypeError(f"{argument} must be a str, got {type(text).__name__}")
        if self.settings.level == "byte":
            return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
        self._check_fitted()
        unknown = sorted(set(text) - set(self.characters))
        if unknown:
            raise ValueError(
                f"{argument} has {len(unknown)} character(s) the model never saw at fit: "
                f"{''.join(unknown[:20])!r}; a level='byte' model accepts any text"
            )
        return CharVocabulary(self.characters).encode(text)

    def decode(self, ids: list[int]) -> str:
        if self.settings.level == "byte":
            return bytes(ids).decode("utf-8", errors="replace")  # a sample may cut a character
        return "".join(self.characters[i] for i in ids)

    # ------------------------------------------------------------------ training
    def fit(self, text: str, log_every: int = 0, characters: str = "") -> LanguageModel:
        """Train on ``text`` with truncated BPTT; ``log_every`` > 0 prints progress.
        ``characters``: more characters the vocabulary must hold (ones that only held-out
        text has: they get what probability training leaves them); ignored at byte level."""
        s = self.settings
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str to fit a language model")
        if not isinstance(characters, str):
            raise TypeError(f"characters must be a str, got {type(characters).__name__}")
        torch.manual_seed(s.seed)
        if s.level == "char":
            self.characters = CharVocabulary(text + characters).characters
        stream = self.encode(text)  # [N]
        if stream.numel() < 2 * s.batch_size + 1:
            raise ValueError(
                f"text must hold at least {2 * s.batch_size + 1} tokens for batch_size "
                f"{s.batch_size}, got {stream.numel()}"
            )
        streams = batchify(stream[:-1], s.batch_size)  # [N/B, B] inputs
        targets = batchify(stream[1:], s.batch_size)  # [N/B, B] each input's next token
        self.net = self._build_net()
        optimiser = torch.optim.Adam(self.net.parameters(), lr=s.lr)
        spans = chunks(streams.shape[0], s.bptt)
        total = s.steps if s.steps is not None else s.epochs * len(spans)
        self.net.train()
        self.history, step, start = [], 0, time.perf_counter()
        while step < total:
            state = None  # each pass starts the streams afresh
            for span in spans:
                logits, state = self.net(streams[span], state=state)  # [T, B, V]
                loss = F.cross_entropy(logits.flatten(0, 1), targets[span].flatten())
                optimiser.zero_grad()
                loss.backward()
                if s.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), s.grad_clip)
                optimiser.step()
                state = detach_state(state)
                step += 1
                if log_every and (step % log_every == 0 or step == total):
                    record = {
                        "step": step,
                        "seconds": round(time.perf_counter() - start, 2),
                        "train_bits_per_token": round(loss.item() / math.log(2), 4),
                    }
                    self.history.append(record)
                    print(json.dumps(record), flush=True)
                if step >= total:
                    break
        self.net.eval()
        return self

    def _build_net(self) -> lstmkit.SequenceNet:
        s = self.settings
        config = lstmkit.SequenceNetConfig(
            input_size=self.vocab_size,
            output_size=self.vocab_size,
            tokens=True,
            embedding_dim=s.embedding_dim,
            cell="gru" if s.variant == "gru" else "lstm",
            variant="standard" if s.variant == "gru" else s.variant,
            hidden_size=s.hidden_size,
            num_layers=s.num_layers,
            dropout=s.dropout,
            proj_size=s.proj_size,
            backend=s.backend,
        )
        net = lstmkit.SequenceNet(config)
        if s.tie_weights:  # one matrix embeds token v and scores it: [V, E]
            net.head.weight = net.embedding.weight
        return net

    def _check_fitted(self) -> None:
        if self.net is None and self.characters is None:
            raise ValueError("this LanguageModel is not fitted yet: call fit(text) first")

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def token_log_probs(self, tokens: Tensor) -> Tensor:
        """``[N] -> [N - 1]``: the natural log-probability of tokens[t + 1] given tokens[:t + 1],
        one stream with the state carried across chunks of EVAL_CHUNK steps."""
        self._check_fitted()
        self.net.eval()
        scores, state = [], None
        for span in chunks(tokens.numel() - 1, EVAL_CHUNK):
            logits, state = self.net(tokens[span, None], state=state)  # [T, 1, V]
            following = tokens[span.start + 1 : span.stop + 1, None]  # [T, 1]
            scores.append(logits[:, 0].log_softmax(-1).gather(1, following)[:, 0])
        return torch.cat(scores)

    def bits_per_char(self, text: str) -> float:
        """Mean bits of characters 2..N of ``text``, each predicted from all before it."""
        if not isinstance(text, str) or len(text) < 2:
            raise ValueError(f"text must be a str of at least 2 characters, got {text!r:.40}")
        tokens = self.encode(text)
        log_probs = self.token_log_probs(tokens)
        # at byte level, the first character's own continuation bytes are not counted
        skip = len(text[0].encode("utf-8")) - 1 if self.settings.level == "byte" else 0
        return float(-log_probs[skip:].sum()) / math.log(2) / (len(text) - 1)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
    ) -> str:
        """``n`` tokens (characters, or bytes decoded) sampled after ``prompt``, the
        continuation alone. ``top_k=1`` is greedy decoding; ``seed`` makes the draw repeat."""
        self._check_fitted()
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(
                f"prompt must be a non-empty str (the model reads it first), got {prompt!r}"
            )
        _positive_int("n", n, minimum=0)
        check_sampling(temperature, top_k)
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        tokens = self.encode(prompt, "prompt")  # [P]
        self.net.eval()
        state = None
        for span in chunks(len(tokens), EVAL_CHUNK):
            logits, state = self.net(tokens[span, None], state=state)  # [T, 1, V]
        following = logits[-1, 0]  # [V]
        generated: list[int] = []
        for index in range(n):
            generated.append(sample_next(following, temperature, top_k, generator))
            if index + 1 < n:
                logits, state = self.net(torch.tensor([[generated[-1]]]), state=state)
                following = logits[0, 0]
        return self.decode(generated)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write weights, architecture, settings and vocabulary to ``path`` atomically."""
        self._check_fitted()
        # clones: tied weights share one tensor, which safetensors will not write twice
        tensors = {name: t.detach().cpu().clone() for name, t in self.net.state_dict().items()}
        config = {"kind": KIND, "net": self.net.to_dict()}
        extra = {
            "settings": asdict(self.settings),
            "characters": self.characters,
            "history": self.history,
        }
        return write(path, tensors, config, extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LanguageModel:
        """The LanguageModel that ``save`` wrote to ``path``."""
        config, tensors, extra = read(path)
        if config.get("kind") != KIND or extra is None:
            raise ValueError(f"path {path} holds a {config.get('kind')!r}, not a saved {KIND}")
        model = cls(**extra["settings"])
        model.characters = extra["characters"]
        model.history = extra["history"]
        net = model._build_net()
        model.net = load_weights(net, tensors, path).eval()
        return model

    def __repr__(self) -> str:
        s = self.settings
        state = "fitted" if self.net is not None else "not fitted"
        return (
            f"LanguageModel(level={s.level!r}, variant={s.variant!r}, hidden_size={s.hidden_size}, "
            f"num_layers={s.num_layers}, tie_weights={s.tie_weights}; {state})"
        )


# ----------------------------------------------------------------------------- the baseline
class KneserNeyBaseline:
    """A character n-gram with interpolated Kneser-Ney smoothing (nltk.lm), scored by the
    same protocol as ``LanguageModel.bits_per_char``: character t is predicted from the
    ``order - 1`` characters before it (fewer at the start of the text).

    nltk's lowest order is the continuation-count unigram, which gives a character never
    seen in training probability 0; the baseline mixes in the uniform distribution over its
    vocabulary with weight ``floor``, so such a character costs about log2(V / floor) bits,
    not infinity. nltk scans its counts for every continuation count, so scoring slows as the
    training text grows; repeated (context, character) pairs are scored once (a cache).
    """

    def __init__(self, order: int = 5, discount: float = 0.75, floor: float = 1e-4) -> None:
        self.order = _positive_int("order", order)
        if not 0 < discount < 1:
            raise ValueError(f"discount must be in (0, 1), got {discount!r}")
        if not 0 < floor < 1:
            raise ValueError(f"floor must be in (0, 1), got {floor!r}")
        self.discount, self.floor = discount, floor
        self.model = None

    def fit(self, text: str, characters: str = "") -> KneserNeyBaseline:
        """Count the n-grams of ``text``; ``characters``: more vocabulary, as LanguageModel's."""
        from nltk.lm import KneserNeyInterpolated
        from nltk.util import everygrams

        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str to fit the n-gram baseline")
        self.characters = "".join(sorted(set(text + characters)))
        self.model = KneserNeyInterpolated(self.order, discount=self.discount)
        self.model.fit([everygrams(list(text), max_len=self.order)], self.characters)
        self._log2 = lru_cache(maxsize=1 << 20)(self._uncached_log2)
        return self

    def _uncached_log2(self, character: str, context: str) -> float:
        probability = self.model.score(character, list(context))
        return math.log2((1 - self.floor) * probability + self.floor / len(self.characters))

    def log2_prob(self, character: str, context: str) -> float:
        """log2 P(character | the last order - 1 characters of context)."""
        if self.model is None:
            raise ValueError("this KneserNeyBaseline is not fitted yet: call fit(text) first")
        return self._log2(character, context[-(self.order - 1) :] if self.order > 1 else "")

    def bits_per_char(self, text: str) -> float:
        if not isinstance(text, str) or len(text) < 2:
            raise ValueError(f"text must be a str of at least 2 characters, got {text!r:.40}")
        unknown = sorted(set(text) - set(self.characters))
        if unknown:
            raise ValueError(
                f"text has character(s) the n-gram never saw at fit: {''.join(unknown[:20])!r}"
            )
        bits = sum(
            -self.log2_prob(text[t], text[max(0, t - self.order + 1) : t])
            for t in range(1, len(text))
        )
        return bits / (len(text) - 1)
