"""Spatiotemporal prediction with Shi et al.'s (2015) encoder-forecaster, and the
reproduction of their Moving MNIST experiment (``lstmkit reproduce convlstm``).

The encoder-forecaster (Shi et al., Fig. 3): an encoder of stacked recurrent layers reads the
input frames; a forecaster of the same layers starts from the encoder's final states
(h and c, layer by layer), runs for the number of frames to predict with no input of its
own, and a 1x1 convolution of all its layers' hidden states, concatenated, gives every
predicted frame. With ConvLSTM layers the frames are cut into p x p patches stacked as
channels first (Shi et al.'s 64x64 frames became 16x16 frames of 16 channels); with
FC-LSTM layers the frames are flattened to vectors and the 1x1 convolution is a linear map.

Written on lstmkit's public API only (``lstmkit.ConvLSTM``, ``lstmkit.LSTM``,
``lstmkit.data.moving_digits``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lstmkit
from lstmkit.data.moving_digits import moving_digits
from lstmkit.tasks.reproduce import ReproductionResult

Loss = Literal["cross_entropy", "mse"]


@dataclass(frozen=True)
class ForecasterConfig:
    """An encoder-forecaster's architecture."""

    cell: Literal["convlstm", "fc-lstm"] = "convlstm"
    hidden: tuple[int, ...] = (64,)  # channels (ConvLSTM) or units (FC-LSTM) per layer
    kernel_size: int = 5  # ConvLSTM input-to-state kernel
    state_kernel_size: int = 5  # ConvLSTM state-to-state kernel
    peephole: bool = True  # ConvLSTM: per-channel peepholes; FC-LSTM: variant "peephole"
    frame_size: int = 32  # square frames
    channels: int = 1
    patch_size: int = 4  # ConvLSTM: p x p patches become channels
    forget_bias: float = 1.0
    backend: str = "auto"  # FC-LSTM layers: lstmkit.LSTM's backend


class EncoderForecaster(nn.Module):
    """Reads ``[B, T_in, C, H, W]`` frames, returns logits ``[B, T_out, C, H, W]`` of the
    next ``T_out`` frames (``predict`` gives intensities in (0, 1))."""

    def __init__(self, config: ForecasterConfig) -> None:
        super().__init__()
        if not config.hidden:
            raise ValueError("hidden must name at least one layer, got ()")
        if config.cell not in ("convlstm", "fc-lstm"):
            raise ValueError(f"cell must be 'convlstm' or 'fc-lstm', got {config.cell!r}")
        if config.cell == "convlstm" and config.frame_size % config.patch_size:
            raise ValueError(
                f"frame_size must be a multiple of patch_size ({config.patch_size}), "
                f"got {config.frame_size}"
            )
        self.config = config
        sizes = [self._features, *config.hidden[:-1]]
        self.encoder = nn.ModuleList(
            self._layer(n, h) for n, h in zip(sizes, config.hidden, strict=True)
        )
        # the forecaster's first layer has no input: it reads one zero channel
        sizes = [1, *config.hidden[:-1]]
        self.forecaster = nn.ModuleList(
            self._layer(n, h) for n, h in zip(sizes, config.hidden, strict=True)
        )
        if config.cell == "convlstm":
            self.readout = nn.Conv2d(sum(config.hidden), self._features, 1)
        else:
            self.readout = nn.Linear(sum(config.hidden), self._features)

    @property
    def _features(self) -> int:
        c = self.config
        if c.cell == "convlstm":
            return c.channels * c.patch_size**2
        return c.channels * c.frame_size**2

    def _layer(self, inputs: int, hidden: int) -> nn.Module:
        c = self.config
        if c.cell == "convlstm":
            return lstmkit.ConvLSTM(
                inputs, hidden, c.kernel_size, state_kernel_size=c.state_kernel_size,
                peephole=c.peephole, forget_bias=c.forget_bias,
            )  # fmt: skip
        variant = "peephole" if c.peephole else "standard"
        return lstmkit.LSTM(
            inputs, hidden, variant=variant, forget_bias=c.forget_bias, backend=c.backend
        )

    # ----------------------------------------------------------------- frames <-> features
    def _encode_frames(self, frames: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` -> ``[T, B, C*p*p, H/p, W/p]`` (patches) or ``[T, B, C*H*W]``."""
        x = frames.transpose(0, 1)
        if self.config.cell == "convlstm":
            T, B = x.shape[:2]
            patches = F.pixel_unshuffle(x.reshape(T * B, *x.shape[2:]), self.config.patch_size)
            return patches.reshape(T, B, *patches.shape[1:])
        return x.flatten(2)

    def _decode_frames(self, features: Tensor) -> Tensor:
        """The inverse of ``_encode_frames``: ``[T, B, ...]`` -> ``[B, T, C, H, W]``."""
        c = self.config
        T, B = features.shape[:2]
        if c.cell == "convlstm":
            frames = F.pixel_shuffle(features.flatten(0, 1), c.patch_size)
        else:
            frames = features.reshape(T * B, c.channels, c.frame_size, c.frame_size)
        return frames.reshape(T, B, *frames.shape[1:]).transpose(0, 1)

    # ----------------------------------------------------------------- running
    def forward(self, frames: Tensor, future: int = 10) -> Tensor:
        """frames ``[B, T_in, C, H, W]`` -> logits ``[B, future, C, H, W]``."""
        c = self.config
        expected = (c.channels, c.frame_size, c.frame_size)
        if frames.dim() != 5 or tuple(frames.shape[2:]) != expected:
            raise ValueError(
                f"frames must be [B, T, {c.channels}, {c.frame_size}, {c.frame_size}], "
                f"got shape {tuple(frames.shape)}"
            )
        x = self._encode_frames(frames)
        states = []
        for layer in self.encoder:
            x, state = layer(x)
            states.append(state)
        B = frames.shape[0]
        y = x.new_zeros(future, B, 1, *x.shape[3:])  # the forecaster's missing input
        hidden = []
        for layer, state in zip(self.forecaster, states, strict=True):
            y, _ = layer(y, state)
            hidden.append(y)
        h = torch.cat(hidden, dim=2)  # [T, B, sum(hidden), ...]
        if c.cell == "convlstm":
            logits = self.readout(h.flatten(0, 1)).reshape(future, B, -1, *h.shape[3:])
        else:
            logits = self.readout(h)
        return self._decode_frames(logits)

    @torch.no_grad()
    def predict(self, frames: Tensor, future: int = 10) -> Tensor:
        """Predicted intensities in (0, 1), ``[B, future, C, H, W]``."""
        return torch.sigmoid(self(frames, future))


def frame_loss(logits: Tensor, targets: Tensor, loss: Loss = "cross_entropy") -> Tensor:
    """Mean per-pixel loss: Bernoulli cross-entropy on the logits, or MSE on the
    intensities ``sigmoid(logits)``; ``targets`` are intensities in [0, 1]."""
    if loss == "cross_entropy":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if loss == "mse":
        return F.mse_loss(torch.sigmoid(logits), targets)
    raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")


def count_parameters(model: EncoderForecaster) -> int:
    """Parameters that can change a prediction, as Shi et al. count them: all but the input
    weights of the forecaster's first layer, whose input is always zero."""
    total = sum(p.numel() for p in model.parameters())
    return total - model.forecaster[0].weight_ih_l0.numel()


# --------------------------------------------------------------------------- training


@dataclass
class Splits:
    """Moving-digit sequences ``[N, T_in + T_out, 1, S, S]`` as uint8 (0..255)."""

    train: Tensor
    validation: Tensor
    test: Tensor
    inputs: int = 10

    @staticmethod
    def frames(batch: Tensor, inputs: int) -> tuple[Tensor, Tensor]:
        """uint8 sequences -> (input frames, target frames), float in [0, 1]."""
        x = batch.float() / 255.0
        return x[:, :inputs], x[:, inputs:]


@dataclass(frozen=True)
class TrainPlan:
    steps: int
    batch_size: int = 16
    lr: float = 1e-3
    eval_every: int = 250
    clip: float = 1.0
    loss: Loss = "cross_entropy"


@torch.no_grad()
def evaluate(model: EncoderForecaster, sequences: Tensor, inputs: int = 10, batch_size: int = 64):
    """Test metrics over ``sequences`` (uint8): cross-entropy summed over the predicted
    frames' pixels per sequence (Shi et al.'s number), its per-pixel mean, and the MSE of
    the intensities summed over the pixels per frame."""
    model.eval()
    ce, se, count = 0.0, 0.0, 0
    for start in range(0, len(sequences), batch_size):
        x, y = Splits.frames(sequences[start : start + batch_size], inputs)
        logits = model(x, y.shape[1])
        ce += F.binary_cross_entropy_with_logits(logits, y, reduction="sum").item()
        se += (torch.sigmoid(logits) - y).square().sum().item()
        count += len(x)
    frames, pixels = sequences.shape[1] - inputs, math.prod(sequences.shape[2:])
    model.train()
    return {
        "ce_per_sequence": ce / count,
        "ce_per_pixel": ce / (count * frames * pixels),
        "mse_per_frame": se / (count * frames),
    }


def train_model(
    model: EncoderForecaster,
    splits: Splits,
    plan: TrainPlan,
    *,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Adam with a cosine-decayed learning rate and gradient clipping; the weights with the
    best validation cross-entropy are kept (Shi et al. stop early on validation)."""
    log = log or _say
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=plan.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / plan.steps, 1.0)))
    )
    best, best_state, history = math.inf, copy.deepcopy(model.state_dict()), []
    order = torch.randperm(len(splits.train), generator=generator)
    cursor, start = 0, time.perf_counter()
    model.train()
    for step in range(1, plan.steps + 1):
        if cursor + plan.batch_size > len(order):
            order, cursor = torch.randperm(len(splits.train), generator=generator), 0
        batch = splits.train[order[cursor : cursor + plan.batch_size]]
        cursor += plan.batch_size
        x, y = Splits.frames(batch, splits.inputs)
        loss = frame_loss(model(x, y.shape[1]), y, plan.loss)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), plan.clip)
        optimiser.step()
        schedule.step()
        if step % plan.eval_every == 0 or step == plan.steps:
            metrics = evaluate(model, splits.validation, splits.inputs)
            history.append({"step": step, "train_loss": loss.item(), **metrics})
            if metrics["ce_per_sequence"] < best:
                best, best_state = metrics["ce_per_sequence"], copy.deepcopy(model.state_dict())
            log(
                f"  step {step:5d}  train {loss.item():.4f}  "
                f"val CE/seq {metrics['ce_per_sequence']:8.1f}  "
                f"{time.perf_counter() - start:6.0f} s"
            )
    model.load_state_dict(best_state)
    return {"history": history, "seconds": time.perf_counter() - start, "best_val": best}


# --------------------------------------------------------------------------- the picture


def draw_strip(path: Path, inputs: Tensor, target: Tensor, predictions: dict[str, Tensor]):
    """One sequence as rows of frames: input, target, then each model's prediction.

    inputs ``[T_in, 1, S, S]``, target and every prediction ``[T_out, 1, S, S]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("input", inputs), ("target", target), *predictions.items()]
    columns = max(len(frames) for _, frames in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(columns * 0.55 + 1.4, len(rows) * 0.6), squeeze=False
    )
    for r, (label, frames) in enumerate(rows):
        for t in range(columns):
            axis = axes[r, t]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if t < len(frames):
                axis.imshow(frames[t, 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    for t in range(columns):
        axes[0, t].set_title(f"t={t + 1}", fontsize=6)
        axes[1, t].set_title(f"t={len(inputs) + t + 1}", fontsize=6)
    figure.subplots_adjust(left=0.16, right=0.99, top=0.93, bottom=0.01, wspace=0.05, hspace=0.5)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=90)
    plt.close(figure)
    temporary.replace(path)


# --------------------------------------------------------------------------- reproduction


@dataclass(frozen=True)
class Scale:
    """How far the reproduction is scaled down from Shi et al. (see docs/convlstm.md)."""

    train: int
    validation: int
    test: int
    steps: int
    eval_every: int


def _models(width: int) -> dict[str, tuple[ForecasterConfig, float]]:
    """Each model and its learning rate: Shi et al.'s three ConvLSTM stacks with channels
    divided by ``256 // width``, and an FC-LSTM (2 layers, as theirs) sized to the 1-layer
    ConvLSTM's parameter count.

    The learning rates are each model's better one of 1e-3 (Shi et al.'s) and 2e-3 by
    validation cross-entropy in two full runs (docs/convlstm.md has both).
    """
    w = width
    conv = ForecasterConfig
    return {
        "ConvLSTM 1 layer": (conv(hidden=(w,)), 1e-3),
        "ConvLSTM 2 layers": (conv(hidden=(w // 2, w // 2)), 1e-3),
        "ConvLSTM 3 layers": (conv(hidden=(w // 2, w // 4, w // 4)), 2e-3),
        "FC-LSTM 2 layers": (conv(cell="fc-lstm", hidden=(112, 112)), 2e-3),
    }


FULL = Scale(train=10000, validation=1000, test=3000, steps=2500, eval_every=250)
QUICK = Scale(train=2000, validation=200, test=500, steps=250, eval_every=125)
SHI = {  # Shi et al. 2015, Table 1 (Moving MNIST, 64x64 frames, cross-entropy per sequence)
    "ConvLSTM 3 layers": 3670.85,
    "ConvLSTM 2 layers": 3733.56,
    "FC-LSTM 2 layers": 4832.49,
}


def run(*, quick: bool = False, output_dir: Path, seed: int = 0) -> ReproductionResult:
    """Train every model of the comparison, test it, draw the strip; see docs/convlstm.md."""
    began = time.perf_counter()
    scale = QUICK if quick else FULL
    torch.manual_seed(seed)
    _say(f"moving digits: {scale.train} train, {scale.validation} validation, {scale.test} test")
    splits = Splits(
        moving_digits(scale.train, split="train", seed=seed, dtype=torch.uint8),
        moving_digits(scale.validation, split="validation", seed=seed, dtype=torch.uint8),
        moving_digits(scale.test, split="test", seed=seed, dtype=torch.uint8),
    )
    plan = TrainPlan(steps=scale.steps, eval_every=scale.eval_every)  # lr: per model
    rows, details, predictions = [], {}, {}
    shown = 0  # the test sequence in the picture
    x_shown, y_shown = Splits.frames(splits.test[shown : shown + 1], splits.inputs)

    # two yardsticks: a predictor that learned nothing (every pixel at the training set's
    # mean intensity), and a perfect one, whose cross-entropy is the targets' own entropy
    # (grey pixels are soft targets)
    mean = splits.train.float().mean() / 255.0
    _, y_test = Splits.frames(splits.test, splits.inputs)
    ignorant = F.binary_cross_entropy(mean.expand_as(y_test), y_test, reduction="sum").item()
    entropy = F.binary_cross_entropy(y_test, y_test, reduction="sum").item()
    ignorant, entropy = ignorant / len(y_test), entropy / len(y_test)
    pixels = math.prod(y_test.shape[1:])
    del y_test

    for name, (config, lr) in _models(64).items():
        torch.manual_seed(seed)
        model = EncoderForecaster(config)
        params = count_parameters(model)
        _say(f"{name}: {params:,} parameters, {plan.steps} steps of {plan.batch_size}, lr {lr}")
        trained = train_model(model, splits, replace(plan, lr=lr), seed=seed)
        metrics = evaluate(model, splits.test, splits.inputs)
        predictions[name] = model.predict(x_shown)[0]
        details[name] = {
            "config": asdict(config), "lr": lr, "parameters": params, **trained, **metrics
        }  # fmt: skip
        rows.append(
            [
                name,
                _describe(config),
                params,
                lr,
                metrics["ce_per_sequence"],
                metrics["ce_per_pixel"],
                SHI.get(name, "-"),
                round(trained["seconds"]),
            ]
        )
    rows.append(
        ["mean intensity", "every pixel at the mean", 0, "-", ignorant, ignorant / pixels, "-", 0]
    )
    rows.append(["perfect", "the targets' entropy", 0, "-", entropy, entropy / pixels, "-", 0])

    strip = output_dir / "convlstm_strip.png"
    draw_strip(strip, x_shown[0], y_shown[0], predictions)
    (output_dir / "details.json").write_text(_json(details), encoding="utf-8")
    seconds = time.perf_counter() - began
    return ReproductionResult(
        title="ConvLSTM vs FC-LSTM on moving digits (Shi et al. 2015, Table 1, scaled down)",
        columns=[
            "model",
            "layers (hidden)",
            "parameters",
            "lr",
            "test CE / sequence",
            "CE / pixel",
            "Shi et al. CE",
            "train s",
        ],
        rows=rows,
        notes=[
            f"{'quick' if quick else 'full'} run, seed {seed}: {scale.train} train / "
            f"{scale.validation} validation / {scale.test} test sequences of 10 + 10 frames, "
            f"32x32; {plan.steps} Adam steps of {plan.batch_size} (cosine-decayed learning "
            "rate lr, the better of 1e-3 and 2e-3 per model), best validation weights.",
            "CE / sequence sums the Bernoulli cross-entropy over the 10 predicted frames' "
            "1024 pixels (Shi et al. sum over 4096 pixels of 64x64 frames: their 3670.85 "
            "is 0.0896 per pixel). The digits and the resolution differ, so only the order "
            "of the models compares with theirs, not the numbers.",
        ],
        files={"strip": str(strip), "details": str(output_dir / "details.json")},
        seconds=seconds,
    )


def _describe(config: ForecasterConfig) -> str:
    hidden = "-".join(str(h) for h in config.hidden)
    if config.cell == "convlstm":
        k = config.kernel_size
        return f"{len(config.hidden)} x ConvLSTM {k}x{k} ({hidden})"
    return f"{len(config.hidden)} x FC-LSTM ({hidden})"


def _say(line: str) -> None:
    print(line, flush=True)  # progress of a long run, line by line even into a file


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2) + "\n"
