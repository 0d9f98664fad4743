"""``lstmkit.save`` / ``lstmkit.load`` (lstmkit/io.py) and the atomic Lightning checkpoint
writer (``lstmkit.training.run.AtomicCheckpointIO``).

A round trip must give a module that computes exactly (``torch.equal``) what the saved one
computed, for every kind of configuration ``to_dict`` has to carry; the file must be a plain
safetensors file; a bad file must say what is wrong with it; and a write that fails midway
must leave an existing file byte for byte as it was, with no temporary file behind.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import lstmkit
import lstmkit.io
from lstmkit.training.run import AtomicCheckpointIO

D, H, T, B = 3, 5, 6, 2  # input size, hidden size, time steps, batch
VOCAB = 7  # token inputs


def says(*parts: str) -> str:
    """A ``match=`` pattern: every literal part, in order, anywhere in the message."""
    return ".*".join(re.escape(part) for part in parts)


CUSTOM = lstmkit.LSTMVariant(
    "mine", output_gate=False, coupled=True, peephole="diagonal", sigma_c="identity", paper="-"
)

# name -> a module; each stresses a different part of what to_dict must carry
CASES = {
    "lstm-standard": lambda: lstmkit.LSTM(D, H),
    "lstm-forget_bias-batch_first": lambda: lstmkit.LSTM(D, H, batch_first=True, forget_bias=1.0),
    "lstm-no-bias": lambda: lstmkit.LSTM(D, H, bias=False),
    "lstm-peephole-proj-ln-zoneout-clip-activations": lambda: lstmkit.LSTM(
        D,
        H,
        num_layers=2,
        proj_size=3,
        variant="peephole",
        layer_norm=True,
        zoneout=(0.1, 0.3),
        cell_clip=0.2,  # small enough to clip: a lost clip changes the output
        sigma_g="hard_sigmoid",
        sigma_c="relu",
        sigma_h="identity",
    ),
    "lstm-fgr": lambda: lstmkit.LSTM(D, H, variant="fgr"),
    "lstm-custom-variant": lambda: lstmkit.LSTM(D, H, variant=CUSTOM),
    "lstm-bidirectional-L3": lambda: lstmkit.LSTM(
        D, H, num_layers=3, bidirectional=True, dropout=0.25, recurrent_dropout=0.1
    ),
    "gru-reset-before-ln-zoneout": lambda: lstmkit.GRU(
        D, H, reset_after=False, layer_norm=True, zoneout=0.2
    ),
    "gru-bidirectional-L2": lambda: lstmkit.GRU(D, H, num_layers=2, bidirectional=True),
    "slstm-sigmoid-L2": lambda: lstmkit.sLSTM(
        D, 6, num_heads=2, num_layers=2, forget_gate="sigmoid"
    ),
    "mlstm-chunkwise-bidirectional": lambda: lstmkit.mLSTM(
        D, 6, num_heads=2, bidirectional=True, form="chunkwise", chunk_size=2
    ),
    "xlstm-lm-tied": lambda: lstmkit.xLSTM(
        8, "xLSTM[1:1]", 4, num_heads=2, vocab_size=VOCAB, tie_weights=True, chunk_size=2
    ),
    "xlstm-features-batch-first": lambda: lstmkit.xLSTM(
        8,
        ["s", "m"],
        num_heads=2,
        batch_first=True,
        conv_kernel_size=0,
        slstm_forget_gate="sigmoid",
        mlstm_forget_gate="exp",
        mlstm_proj_factor=1.5,
        ffn_factor=2.0,
    ),
    "net-tokens": lambda: lstmkit.SequenceNet(
        lstmkit.SequenceNetConfig(
            VOCAB, 4, tokens=True, embedding_dim=3, variant="cifg", hidden_size=H
        )
    ),
    "net-gru-bidirectional-mean": lambda: lstmkit.SequenceNet(
        lstmkit.SequenceNetConfig(
            D, 2, cell="gru", bidirectional=True, hidden_size=H, readout="mean"
        )
    ),
    "net-proj-last": lambda: lstmkit.SequenceNet(
        lstmkit.SequenceNetConfig(
            D, 1, proj_size=2, hidden_size=H, num_layers=2, readout="last", forget_bias=0.5
        )
    ),
}


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter off its initial value (layer-norm gains and peepholes included),
    so that a weight the file forgot cannot come back equal from a fresh init."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return module.eval()


def example_input(module: torch.nn.Module) -> torch.Tensor:
    if isinstance(module, lstmkit.SequenceNet) and module.config.tokens:
        return torch.randint(0, VOCAB, (T, B))
    if isinstance(module, lstmkit.xLSTM):
        if module.vocab_size is not None:
            return torch.randint(0, VOCAB, (T, B))
        return torch.randn(B, T, module.embedding_dim)  # batch first
    if getattr(module, "batch_first", False):
        return torch.randn(B, T, D)
    return torch.randn(T, B, D)


def flat(outputs) -> list[torch.Tensor]:
    """Every tensor of a module's return value, in order (output, then each state)."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for item in outputs for tensor in flat(item)]


def assert_same_module(saved: torch.nn.Module, loaded: torch.nn.Module) -> None:
    assert type(loaded) is type(saved)
    assert loaded.to_dict() == saved.to_dict()
    # repr comes from the built module, not from to_dict: catches an option to_dict drops
    assert repr(loaded) == repr(saved)
    expected, actual = saved.state_dict(), loaded.state_dict()
    assert list(actual) == list(expected)
    for name, tensor in expected.items():
        assert actual[name].dtype == tensor.dtype, name
        assert torch.equal(actual[name], tensor), name


# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize("case", CASES)
def test_round_trip_gives_identical_outputs(case, tmp_path):
    module = perturbed(CASES[case]())
    path = lstmkit.save(module, tmp_path / "model.safetensors")
    assert path == tmp_path / "model.safetensors"
    loaded = lstmkit.load(path).eval()
    assert_same_module(module, loaded)
    x = example_input(module)
    with torch.no_grad():
        expected, actual = flat(module(x)), flat(loaded(x))
    assert len(actual) == len(expected)
    for k, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert torch.equal(a, e), f"{case}: output {k} differs after the round trip"


@pytest.mark.parametrize("case", ["lstm-standard", "gru-bidirectional-L2", "net-tokens"])
def test_method_save_equals_function_save(case, tmp_path):
    module = perturbed(CASES[case]())
    returned = module.save(tmp_path / "method.safetensors")
    assert returned == tmp_path / "method.safetensors"
    lstmkit.save(module, tmp_path / "function.safetensors")
    by_method, by_function = (
        lstmkit.io.read(tmp_path / name) for name in ("method.safetensors", "function.safetensors")
    )
    assert by_method[0] == by_function[0] == module.to_dict()
    assert by_method[1].keys() == by_function[1].keys()
    for name in by_method[1]:
        assert torch.equal(by_method[1][name], by_function[1][name]), name
    assert_same_module(module, lstmkit.load(tmp_path / "method.safetensors"))


def test_loaded_custom_variant_keeps_its_flags(tmp_path):
    module = lstmkit.LSTM(D, H, variant=CUSTOM)
    loaded = lstmkit.load(module.save(tmp_path / "m.safetensors"))
    assert loaded.variant == CUSTOM


def test_saving_again_replaces_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    lstmkit.save(lstmkit.LSTM(D, H), path)
    second = perturbed(lstmkit.GRU(D, H + 1))
    lstmkit.save(second, path)
    assert_same_module(second, lstmkit.load(path))
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_tied_weights_stay_tied(tmp_path):
    module = perturbed(CASES["xlstm-lm-tied"]())
    loaded = lstmkit.load(lstmkit.save(module, tmp_path / "m.safetensors"))
    assert loaded.head.weight is loaded.embedding.weight
    assert torch.equal(loaded.head.weight, module.embedding.weight)


def test_round_trip_keeps_float64(tmp_path):
    module = perturbed(lstmkit.LSTM(D, H, dtype=torch.float64))
    loaded = lstmkit.load(lstmkit.save(module, tmp_path / "m.safetensors"))
    assert_same_module(module, loaded)


# ---------------------------------------------------------------------- the file format


def test_file_is_plain_safetensors_with_the_config_in_metadata(tmp_path):
    module = perturbed(CASES["lstm-peephole-proj-ln-zoneout-clip-activations"]())
    path = lstmkit.save(module, tmp_path / "model.safetensors")
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
        tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    # the key is part of the file format: files written earlier must keep loading
    assert json.loads(metadata["lstmkit_config"]) == module.to_dict()
    assert "lstmkit_extra" not in metadata
    expected = module.state_dict()
    assert sorted(tensors) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(tensors[name], tensor), name


def test_extra_is_stored_and_read_back(tmp_path):
    extra = {"train_config": {"optim": {"lr": 0.01}}, "notes": ["a", 1, None]}
    path = lstmkit.save(lstmkit.GRU(D, H), tmp_path / "m.safetensors", extra=extra)
    config, _, read_extra = lstmkit.io.read(path)
    assert read_extra == extra
    assert config == lstmkit.GRU(D, H).to_dict()
    assert lstmkit.io.read(lstmkit.save(lstmkit.GRU(D, H), tmp_path / "n.safetensors"))[2] is None


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_saved_file_has_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = lstmkit.save(lstmkit.LSTM(D, H), tmp_path / "m.safetensors")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)


# ---------------------------------------------------------------------- bad files


def test_load_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match=says(str(path), "does not exist")):
        lstmkit.load(path)


def test_load_folder_is_not_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=says(str(tmp_path), "is not a file")):
        lstmkit.load(tmp_path)


def corrupt(data: bytes, how: str) -> bytes:
    if how == "half":
        return data[: len(data) // 2]
    if how == "one-byte-short":
        return data[:-1]
    if how == "empty":
        return b""
    return bytes(range(256)) * 4  # garbage: its "header length" is far past the end


@pytest.mark.parametrize("how", ["half", "one-byte-short", "empty", "garbage"])
def test_load_corrupt_or_truncated_file(how, tmp_path):
    path = lstmkit.save(lstmkit.LSTM(D, H), tmp_path / "m.safetensors")
    path.write_bytes(corrupt(path.read_bytes(), how))
    with pytest.raises(ValueError, match=says(str(path), "corrupt or truncated")):
        lstmkit.load(path)


def test_load_safetensors_not_written_by_lstmkit(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=says(str(path), "not written by lstmkit.save")):
        lstmkit.load(path)


def write_with_config(path: Path, module: torch.nn.Module, tensors: dict) -> Path:
    """A file that claims ``module``'s architecture but holds ``tensors``."""
    metadata = {"lstmkit_config": json.dumps(module.to_dict())}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_load_weights_missing_from_the_file(tmp_path):
    module = lstmkit.LSTM(D, H)
    tensors = dict(module.state_dict())
    del tensors["weight_hh_l0"]
    path = write_with_config(tmp_path / "m.safetensors", module, tensors)
    with pytest.raises(ValueError, match=says("do not fit its own config", "'weight_hh_l0'")):
        lstmkit.load(path)


def test_load_weights_the_config_does_not_have(tmp_path):
    module = lstmkit.LSTM(D, H)
    tensors = {**module.state_dict(), "bogus": torch.zeros(1)}
    path = write_with_config(tmp_path / "m.safetensors", module, tensors)
    with pytest.raises(ValueError, match=says("do not fit its own config", "unexpected", "bogus")):
        lstmkit.load(path)


def test_load_weights_of_the_wrong_shape(tmp_path):
    tensors = lstmkit.LSTM(D, H + 1).state_dict()
    path = write_with_config(tmp_path / "m.safetensors", lstmkit.LSTM(D, H), tensors)
    with pytest.raises(ValueError, match=says(str(path), "do not fit its own config", "weight")):
        lstmkit.load(path)


def test_load_unknown_kind(tmp_path):
    path = tmp_path / "m.safetensors"
    metadata = {"lstmkit_config": json.dumps({"kind": "Transformer"})}
    save_file({"w": torch.zeros(1)}, str(path), metadata=metadata)
    kinds = "'LSTM', 'GRU', 'ConvLSTM', 'sLSTM', 'mLSTM', 'xLSTM' or 'SequenceNet'"
    with pytest.raises(ValueError, match=says(kinds, "'Transformer'")):
        lstmkit.load(path)


def test_save_a_module_that_is_not_lstmkit(tmp_path):
    with pytest.raises(TypeError, match=says("lstmkit recurrent module, xLSTM or SequenceNet")):
        lstmkit.save(torch.nn.Linear(2, 2), tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def test_save_into_a_missing_folder(tmp_path):
    folder = tmp_path / "absent"
    with pytest.raises(FileNotFoundError, match=says(str(folder), "does not exist")):
        lstmkit.save(lstmkit.LSTM(D, H), folder / "m.safetensors")
    assert not folder.exists()


# ---------------------------------------------------------------------- atomic writes

FAILURES = {"OSError": OSError("disk full"), "KeyboardInterrupt": KeyboardInterrupt()}


def write_half_then_raise(error: BaseException):
    """A writer that leaves half a file where it was told to write, then fails."""

    def writer(obj, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise error

    return writer


@pytest.mark.parametrize("failure", FAILURES)
def test_failed_save_keeps_the_old_file(failure, tmp_path, monkeypatch):
    path = lstmkit.save(perturbed(lstmkit.LSTM(D, H)), tmp_path / "model.safetensors")
    old = path.read_bytes()
    monkeypatch.setattr(lstmkit.io, "save_file", write_half_then_raise(FAILURES[failure]))
    with pytest.raises(type(FAILURES[failure])):
        lstmkit.save(lstmkit.GRU(D, H), path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_failed_save_with_no_old_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(lstmkit.io, "save_file", write_half_then_raise(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        lstmkit.save(lstmkit.LSTM(D, H), tmp_path / "model.safetensors")
    assert os.listdir(tmp_path) == []


def checkpoint(epoch: int) -> dict:
    return {"epoch": epoch, "state_dict": {"w": torch.randn(3, 2)}}


def test_checkpoint_writer_creates_folders_and_replaces(tmp_path):
    writer = AtomicCheckpointIO()
    path = tmp_path / "a" / "b" / "last.ckpt"
    for epoch in (0, 1):
        saved = checkpoint(epoch)
        writer.save_checkpoint(saved, path)
        loaded = torch.load(path, weights_only=True)
        assert loaded["epoch"] == epoch
        assert torch.equal(loaded["state_dict"]["w"], saved["state_dict"]["w"])
    assert os.listdir(path.parent) == ["last.ckpt"]


@pytest.mark.parametrize("failure", FAILURES)
def test_failed_checkpoint_keeps_the_old_file(failure, tmp_path, monkeypatch):
    writer = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    writer.save_checkpoint(checkpoint(0), path)
    old = path.read_bytes()
    monkeypatch.setattr("lstmkit.training.run.torch.save", write_half_then_raise(FAILURES[failure]))
    with pytest.raises(type(FAILURES[failure])):
        writer.save_checkpoint(checkpoint(1), path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_failed_checkpoint_with_no_old_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("lstmkit.training.run.torch.save", write_half_then_raise(OSError("full")))
    with pytest.raises(OSError, match="full"):
        AtomicCheckpointIO().save_checkpoint(checkpoint(0), tmp_path / "last.ckpt")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_checkpoint_has_the_usual_permissions(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint(0), path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)
