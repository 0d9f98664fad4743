"""``lstmkit.Seq2Seq``: a character-level LSTM encoder-decoder with attention.

The encoder is an embedding and an ``lstmkit.LSTM`` (any variant, optionally bidirectional);
its outputs are projected once to the decoder's size, the *memory* ``m_s``. The decoder is an
``lstmkit.LSTM`` of the same variant run one step at a time. Attention (masked so that padded
source positions get exactly zero weight):

- ``"dot"`` (Luong et al. 2015): score(h_t, m_s) = h_t . m_s, with h_t the new decoder state;
- ``"general"`` (Luong): score = h_t W_a m_s;
- ``"bahdanau"`` (Bahdanau et al. 2015): score = v . tanh(W_q h_{t-1} + U m_s), computed from
  the previous decoder state, before the step, and its context is fed into the step.

With Luong attention the previous attentional vector is fed into the step ("input feeding").
Either way the attentional vector is ``h~_t = tanh(W_c [context_t; h_t])`` and the output
softmax reads ``h~_t``. Training uses teacher forcing (the true previous character is fed);
``translate`` decodes greedily (``beam=1``) or by beam search with length normalisation (a
finished hypothesis, EOS counted, is ranked by its log probability divided by
``length ** length_penalty``; the search stops once ``beam`` hypotheses have finished, or at
the length limit, where the live ones compete unfinished).
``score`` gives exact-match accuracy and character-level BLEU (sacrebleu, ``tokenize="char"``).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

import lstmkit
from lstmkit.io import load_weights, read, write

KIND = "Seq2Seq"
ATTENTIONS = ("dot", "general", "bahdanau")
PAD, BOS, EOS = 0, 1, 2  # target ids; the source vocabulary has only PAD before its characters
TARGET_SPECIALS = 3

Pair = tuple[str, str]
State = tuple[Tensor, Tensor]


@dataclass
class Seq2SeqSettings:
    variant: str = "standard"
    """An lstmkit LSTM variant name (lstmkit.variants()), for encoder and decoder."""
    attention: str = "general"
    """``dot``, ``general`` (Luong) or ``bahdanau``."""
    hidden_size: int = 128
    embedding_dim: int = 32
    num_layers: int = 1
    bidirectional: bool = True
    """A bidirectional encoder (the decoder is always forward)."""
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    clip: float = 1.0
    """Gradient norm clip."""
    length_penalty: float = 1.0
    """Beam search ranks finished hypotheses by log p / length ** length_penalty."""
    max_extra: int = 10
    """Decoding stops after the longest training target plus this many characters."""
    seed: int = 0
    backend: str = "auto"


# ----------------------------------------------------------------------------- the network
class Seq2SeqNet(nn.Module):
    """Encoder, attention and decoder; ``step`` is the one decoder step every path uses."""

    def __init__(self, source_size: int, target_size: int, s: Seq2SeqSettings) -> None:
        super().__init__()
        if s.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {s.attention!r}")
        self.attention = s.attention
        hidden, directions = s.hidden_size, 2 if s.bidirectional else 1
        self.directions, self.num_layers = directions, s.num_layers
        self.source_embedding = nn.Embedding(source_size, s.embedding_dim, padding_idx=PAD)
        self.target_embedding = nn.Embedding(target_size, s.embedding_dim, padding_idx=PAD)
        common = {"num_layers": s.num_layers, "variant": s.variant, "backend": s.backend}
        self.encoder = lstmkit.LSTM(
            s.embedding_dim, hidden, bidirectional=s.bidirectional, **common
        )
        self.decoder = lstmkit.LSTM(s.embedding_dim + hidden, hidden, **common)
        self.memory = nn.Linear(directions * hidden, hidden, bias=False)
        self.bridge_h = nn.Linear(directions * hidden, hidden)
        self.bridge_c = nn.Linear(directions * hidden, hidden)
        if s.attention == "general":
            self.score_weight = nn.Linear(hidden, hidden, bias=False)
        if s.attention == "bahdanau":
            self.score_query = nn.Linear(hidden, hidden)
            self.score_vector = nn.Linear(hidden, 1, bias=False)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.output = nn.Linear(hidden, target_size)

    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, State]:
        """source ``[S, B]`` ids, lengths ``[B]`` -> memory ``[S, B, H]``, mask ``[B, S]``
        (True at padding) and the decoder's initial state (each ``[L, B, H]``)."""
        outputs, (h_n, c_n) = self.encoder(self.source_embedding(source), lengths=lengths)
        batch = source.shape[1]

        def bridged(final: Tensor, layer: nn.Linear) -> Tensor:
            # [L * dirs, B, H] -> [L, B, dirs * H]: each layer's directions side by side
            final = final.view(self.num_layers, self.directions, batch, -1)
            return torch.tanh(layer(final.permute(0, 2, 1, 3).reshape(self.num_layers, batch, -1)))

        mask = torch.arange(source.shape[0])[None, :] >= lengths[:, None]  # [B, S]
        state = (bridged(h_n, self.bridge_h), bridged(c_n, self.bridge_c))
        return self.memory(outputs), mask, state

    def attend(self, query: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query ``[B, H]`` -> context ``[B, H]`` and weights ``[B, S]`` (zero at padding)."""
        if self.attention == "bahdanau":
            energy = torch.tanh(self.score_query(query)[None] + memory)  # [S, B, H]
            scores = self.score_vector(energy).squeeze(-1).T  # [B, S]
        else:
            keyed = self.score_weight(query) if self.attention == "general" else query
            scores = torch.einsum("bh,sbh->bs", keyed, memory)
        weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        return torch.einsum("bs,sbh->bh", weights, memory), weights

    def step(
        self, previous: Tensor, state: State, feed: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, State, Tensor, Tensor]:
        """One decoder step. previous ``[B]`` ids, state ``([L, B, H], [L, B, H])``, feed
        ``[B, H]`` (the last attentional vector) -> logits ``[B, V]``, state, the new
        attentional vector ``[B, H]`` and the attention weights ``[B, S]``."""
        embedded = self.target_embedding(previous)  # [B, E]
        if self.attention == "bahdanau":
            context, weights = self.attend(state[0][-1], memory, mask)
            step_input = torch.cat([embedded, context], dim=-1)
        else:
            step_input = torch.cat([embedded, feed], dim=-1)
        output, state = self.decoder(step_input[None], state)  # output [1, B, H]
        top = output[0]
        if self.attention != "bahdanau":
            context, weights = self.attend(top, memory, mask)
        attentional = torch.tanh(self.combine(torch.cat([context, top], dim=-1)))
        return self.output(attentional), state, attentional, weights

    def forward(self, source: Tensor, lengths: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: previous ``[T, B]`` (BOS then the target) -> logits ``[T, B, V]``
        and attention weights ``[T, B, S]``."""
        memory, mask, state = self.encode(source, lengths)
        feed = memory.new_zeros(memory.shape[1:])
        logits, weights = [], []
        for token in previous:
            step_logits, state, feed, step_weights = self.step(token, state, feed, memory, mask)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits), torch.stack(weights)


# ----------------------------------------------------------------------------- the estimator
def _check_texts(name: str, texts: object) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ValueError(f"{name} must hold at least one string, got an empty list")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name}[{index}] must be a non-empty string, got {text!r}")
    return list(texts)


def _check_pairs(pairs: object) -> tuple[list[str], list[str]]:
    if isinstance(pairs, str) or not isinstance(pairs, Sequence) or not pairs:
        raise ValueError(
            f"pairs must be a non-empty list of (source, target) strings, got {pairs!r}"
        )
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"pairs[{index}] must be a (source, target) pair, got {pair!r}")
    sources = _check_texts("pairs' sources", [p[0] for p in pairs])
    return sources, _check_texts("pairs' targets", [p[1] for p in pairs])


class Seq2Seq:
    """Learn to map strings to strings, character by character (module docstring).

    >>> model = Seq2Seq(epochs=30).fit([("abc", "cba"), ("ab", "ba")])  # doctest: +SKIP
    >>> model.translate(["abc"], beam=3)  # doctest: +SKIP
    """

    def __init__(self, **settings) -> None:
        self.settings = Seq2SeqSettings(**settings)
        if self.settings.attention not in ATTENTIONS:
            raise ValueError(
                f"attention must be one of {ATTENTIONS}, got {self.settings.attention!r}"
            )
        for name in ("hidden_size", "embedding_dim", "num_layers", "batch_size", "epochs"):
            value = getattr(self.settings, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.settings.variant not in lstmkit.variants():
            raise ValueError(
                f"variant must be one of {sorted(lstmkit.variants())}, "
                f"got {self.settings.variant!r}"
            )
        self.source_chars = ""
        self.target_chars = ""
        self.max_target = 0
        self.history: list[float] = []
        self.net: Seq2SeqNet | None = None

    # ------------------------------------------------------------------ vocabularies
    def _encode(self, texts: list[str], chars: str, offset: int, name: str) -> list[list[int]]:
        index = {ch: i + offset for i, ch in enumerate(chars)}
        encoded = []
        for position, text in enumerate(texts):
            unknown = sorted(set(text) - set(index))
            if unknown:
                raise ValueError(
                    f"{name}[{position}] {text!r} has characters the model never saw in "
                    f"training: {unknown[:10]!r}"
                )
            encoded.append([index[ch] for ch in text])
        return encoded

    def _sources(self, texts: list[str], name: str) -> tuple[Tensor, Tensor]:
        """-> source ``[S, B]`` padded ids and lengths ``[B]``."""
        ids = self._encode(texts, self.source_chars, 1, name)
        return _pad(ids), torch.tensor([len(i) for i in ids])

    def _build_net(self) -> Seq2SeqNet:
        return Seq2SeqNet(
            len(self.source_chars) + 1, len(self.target_chars) + TARGET_SPECIALS, self.settings
        )

    def _check_fitted(self) -> Seq2SeqNet:
        if self.net is None:
            raise RuntimeError("this Seq2Seq is not fitted yet: call fit(pairs) or Seq2Seq.load")
        return self.net

    # ------------------------------------------------------------------ training
    def loss(self, sources: list[str], targets: list[str]) -> Tensor:
        """Mean teacher-forced cross-entropy per target character (EOS included)."""
        net = self._check_fitted()
        source, lengths = self._sources(sources, "sources")
        ids = self._encode(targets, self.target_chars, TARGET_SPECIALS, "targets")
        previous = _pad([[BOS, *t] for t in ids])  # [T, B]
        wanted = _pad([[*t, EOS] for t in ids])  # [T, B]
        logits, _ = net(source, lengths, previous)
        return F.cross_entropy(logits.flatten(0, 1), wanted.flatten(), ignore_index=PAD)

    def fit(self, pairs: Sequence[Pair]) -> Seq2Seq:
        """Train on ``pairs`` of (source, target) strings for ``epochs`` passes."""
        sources, targets = _check_pairs(pairs)
        s = self.settings
        torch.manual_seed(s.seed)
        self.source_chars = "".join(sorted(set("".join(sources))))
        self.target_chars = "".join(sorted(set("".join(targets))))
        self.max_target = max(len(t) for t in targets)
        self.net = self._build_net()
        optimiser = torch.optim.Adam(self.net.parameters(), lr=s.lr)
        order = list(range(len(sources)))
        shuffler = random.Random(s.seed)
        self.history = []
        for _ in range(s.epochs):
            shuffler.shuffle(order)
            self.net.train()
            total, batches = 0.0, 0
            for start in range(0, len(order), s.batch_size):
                chosen = order[start : start + s.batch_size]
                loss = self.loss([sources[i] for i in chosen], [targets[i] for i in chosen])
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), s.clip)
                optimiser.step()
                total, batches = total + loss.item(), batches + 1
            self.history.append(total / batches)
        self.net.eval()
        return self

    # ------------------------------------------------------------------ decoding
    @staticmethod
    def _decodable(logits: Tensor) -> Tensor:
        """logits ``[B, V]`` with PAD and BOS ruled out: a decoder emits characters or EOS."""
        return logits.index_fill(-1, torch.tensor([PAD, BOS]), float("-inf"))

    def _decode_ids(self, ids: list[int]) -> str:
        return "".join(self.target_chars[i - TARGET_SPECIALS] for i in ids)

    def _check_decoding(self, sources: object, beam: object) -> list[str]:
        sources = _check_texts("sources", sources)
        if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
            raise ValueError(f"beam must be an integer >= 1, got {beam!r}")
        return sources

    @torch.no_grad()
    def translate(self, sources: Sequence[str], beam: int = 1) -> list[str]:
        """The decoded target of each source: greedy when ``beam`` is 1, else beam search."""
        sources = self._check_decoding(sources, beam)
        net = self._check_fitted().eval()
        if beam == 1:
            return self._greedy(net, sources)
        return [self._beam(net, text, beam) for text in sources]

    def _greedy(self, net: Seq2SeqNet, sources: list[str]) -> list[str]:
        source, lengths = self._sources(sources, "sources")
        memory, mask, state = net.encode(source, lengths)
        feed = memory.new_zeros(memory.shape[1:])
        previous = torch.full((len(sources),), BOS)
        outputs: list[list[int]] = [[] for _ in sources]
        done = torch.zeros(len(sources), dtype=torch.bool)
        for _ in range(self.max_target + self.settings.max_extra):
            logits, state, feed, _ = net.step(previous, state, feed, memory, mask)
            previous = self._decodable(logits).argmax(-1)
            for b in (~done).nonzero().flatten().tolist():
                if previous[b].item() != EOS:
                    outputs[b].append(previous[b].item())
            done |= previous == EOS
            if done.all():
                break
        return [self._decode_ids(o) for o in outputs]

    def _beam(self, net: Seq2SeqNet, text: str, beam: int) -> str:
        """Beam search for one source; the ``beam`` live hypotheses run as a batch."""
        source, lengths = self._sources([text], "sources")
        memory, mask, state = net.encode(source, lengths)
        feed = memory.new_zeros(memory.shape[1:])
        alive: list[list[int]] = [[]]
        alive_scores = torch.zeros(1)
        previous = torch.tensor([BOS])
        finished: list[tuple[float, list[int]]] = []
        alpha = self.settings.length_penalty
        for _ in range(self.max_target + self.settings.max_extra):
            count = len(alive)
            logits, state, feed, _ = net.step(
                previous, state, feed, memory.expand(-1, count, -1), mask.expand(count, -1)
            )
            log_probs = F.log_softmax(self._decodable(logits), dim=-1)  # [K, V]
            totals = alive_scores[:, None] + log_probs
            flat = totals.flatten()
            candidates = flat.topk(min(2 * beam, flat.numel()))
            vocabulary = totals.shape[1]
            keep_rows, keep_tokens, keep_scores = [], [], []
            for score, position in zip(
                candidates.values.tolist(), candidates.indices.tolist(), strict=True
            ):
                row, token = divmod(position, vocabulary)
                if token == EOS:  # length counts the EOS step
                    hypothesis = alive[row]
                    finished.append((score / (len(hypothesis) + 1) ** alpha, hypothesis))
                elif score > float("-inf"):
                    keep_rows.append(row)
                    keep_tokens.append(token)
                    keep_scores.append(score)
                if len(keep_rows) == beam:
                    break
            if len(finished) >= beam or not keep_rows:
                break
            rows = torch.tensor(keep_rows)
            alive = [[*alive[r], t] for r, t in zip(keep_rows, keep_tokens, strict=True)]
            alive_scores = torch.tensor(keep_scores)
            state = (state[0][:, rows], state[1][:, rows])
            feed, previous = feed[rows], torch.tensor(keep_tokens)
        else:  # the length limit cut the live hypotheses: they compete unfinished, as greedy
            finished += [
                (s / len(h) ** alpha, h) for s, h in zip(alive_scores.tolist(), alive, strict=True)
            ]
        return self._decode_ids(max(finished, key=lambda f: f[0])[1]) if finished else ""

    # ------------------------------------------------------------------ evaluation
    def score(self, pairs: Sequence[Pair], beam: int = 1) -> dict[str, float]:
        """Exact-match accuracy and character BLEU (sacrebleu) of ``translate`` on ``pairs``,
        with the seconds decoding took."""
        sources, targets = _check_pairs(pairs)
        started = time.perf_counter()
        hypotheses = self.translate(sources, beam=beam)
        seconds = time.perf_counter() - started
        return evaluate(hypotheses, targets) | {"seconds": seconds}

    @torch.no_grad()
    def attention_weights(self, source: str, target: str) -> Tensor:
        """The teacher-forced attention weights ``[len(target) + 1, len(source)]``."""
        net = self._check_fitted().eval()
        ids, lengths = self._sources([source], "source")
        target_ids = self._encode([target], self.target_chars, TARGET_SPECIALS, "target")[0]
        _, weights = net(ids, lengths, torch.tensor([BOS, *target_ids])[:, None])
        return weights[:, 0]

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write weights, settings and vocabularies to ``path`` atomically."""
        net = self._check_fitted()
        tensors = {name: t.detach().cpu().contiguous() for name, t in net.state_dict().items()}
        extra = {
            "settings": asdict(self.settings),
            "source_chars": self.source_chars,
            "target_chars": self.target_chars,
            "max_target": self.max_target,
            "history": self.history,
        }
        return write(path, tensors, {"kind": KIND}, extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Seq2Seq:
        """The Seq2Seq that ``save`` wrote to ``path``."""
        config, tensors, extra = read(path)
        if config.get("kind") != KIND or extra is None:
            raise ValueError(f"path {path} holds a {config.get('kind')!r}, not a saved {KIND}")
        model = cls(**extra["settings"])
        model.source_chars = extra["source_chars"]
        model.target_chars = extra["target_chars"]
        model.max_target = extra["max_target"]
        model.history = extra["history"]
        model.net = load_weights(model._build_net(), tensors, path).eval()
        return model

    def __repr__(self) -> str:
        s = self.settings
        state = "fitted" if self.net is not None else "not fitted"
        return (
            f"Seq2Seq(variant={s.variant!r}, attention={s.attention!r}, "
            f"hidden_size={s.hidden_size}, bidirectional={s.bidirectional}; {state})"
        )


def _pad(ids: list[list[int]]) -> Tensor:
    """Lists of ids -> ``[T, B]`` padded with PAD."""
    longest = max(len(i) for i in ids)
    return torch.tensor([i + [PAD] * (longest - len(i)) for i in ids]).T.contiguous()


def evaluate(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Exact-match accuracy (0..1) and sacrebleu's corpus BLEU (0..100) over characters."""
    import sacrebleu

    if len(hypotheses) != len(references) or not references:
        raise ValueError(
            f"hypotheses and references must be equally long and non-empty, got "
            f"{len(hypotheses)} and {len(references)}"
        )
    exact = sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)
    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="char").score
    return {"exact_match": exact, "bleu": bleu if math.isfinite(bleu) else 0.0}
