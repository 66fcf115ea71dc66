"""`uptal export`: the layouts ActionFormer / OpenTAD / G-TAD / BMN / TSP read, from one extraction."""
from __future__ import annotations

import json

import numpy as np
import pytest

from uptal.cli import main
from uptal.features.export import export_features, interpolate_time


@pytest.fixture(scope="module")
def extraction(demo_videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("extraction")
    assert main(["extract", str(demo_videos[0].parent), "--out", str(out), "--prefix", "v_", "--backbone", "tiny",
                 "--fps", "10", "--clip-frames", "4", "--clip-stride", "2", "--size", "32", "--no-progress"]) == 0
    return out


def test_interpolation_is_along_time_only():
    steps = np.arange(7, dtype=np.float32)                                   # [T]
    ramp = np.stack([steps, 10 - 2 * steps, np.full(7, 3.0)], axis=1)        # [T, 3]: two ramps, one constant
    resampled = interpolate_time(ramp, 100)                                  # [100, 3]
    assert resampled.shape == (100, 3) and resampled.dtype == np.float32
    np.testing.assert_allclose(resampled[:, 0], np.linspace(0, 6, 100), atol=1e-5)   # a ramp stays a ramp
    np.testing.assert_allclose(resampled[:, 1], np.linspace(10, -2, 100), atol=1e-5)
    np.testing.assert_allclose(resampled[:, 2], 3.0)                                  # constant stays constant
    # channels never mix: a feature that is constant in time but differs per channel keeps its channel values
    per_channel = np.tile(np.arange(5, dtype=np.float32), (9, 1))            # [T=9, C=5]
    np.testing.assert_allclose(interpolate_time(per_channel, 128), np.tile(np.arange(5), (128, 1)))
    # downsampling too, and a single feature is repeated
    assert interpolate_time(np.ones((300, 4), np.float32), 100).shape == (100, 4)
    np.testing.assert_allclose(interpolate_time(np.array([[1.0, 2.0]]), 5), [[1.0, 2.0]] * 5)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_interpolation_length_must_be_an_int_above_one(bad):
    with pytest.raises(ValueError, match="length"):
        interpolate_time(np.zeros((3, 2), np.float32), bad)


def test_actionformer_layout(extraction, tmp_path):
    out = tmp_path / "af"
    assert main(["export", str(extraction), "--to", "actionformer", "--out", str(out)]) == 0
    info = json.loads((out / "feature_info.json").read_text())
    assert (info["feat_stride"], info["num_frames"], info["default_fps"]) == (2, 4, 10.0)
    for name in ("demo_000", "demo_001", "demo_002"):
        features = np.load(out / f"v_{name}.npy")
        np.testing.assert_array_equal(features, np.load(extraction / f"v_{name}.npy"))
        # ActionFormer's own time formula reproduces the extraction's centre timestamps
        metadata = json.loads((extraction / "metadata" / f"{name}.json").read_text())
        times = (np.arange(len(features)) * info["feat_stride"] + 0.5 * info["num_frames"]) / info["default_fps"]
        np.testing.assert_allclose(times, metadata["timestamps"])
        assert features.shape == (19, 32)   # 40 frames, span 4, stride 2


def test_opentad_missing_files(extraction, tmp_path):
    annotations = tmp_path / "anet.json"
    annotations.write_text(json.dumps({"database": {"demo_000": {}, "demo_002": {}, "absent": {}}}))
    out = tmp_path / "opentad"
    assert main(["export", str(extraction), "--to", "opentad", "--out", str(out),
                 "--annotations", str(annotations)]) == 0
    assert (out / "missing_files.txt").read_text() == "absent\n"   # v_demo_000 counts as demo_000
    assert len(list(out.glob("v_*.npy"))) == 3


@pytest.mark.parametrize("target, length", [("gtad", 100), ("bmn", 128)])
def test_fixed_length_layouts(extraction, tmp_path, target, length):
    out = tmp_path / target
    assert main(["export", str(extraction), "--to", target, "--out", str(out), "--length", str(length)]) == 0
    resampled = np.load(out / "v_demo_001.npy")
    source = np.load(extraction / "v_demo_001.npy")
    assert resampled.shape == (length, source.shape[1])
    np.testing.assert_allclose(resampled[[0, -1]], source[[0, -1]], rtol=1e-6)   # the ends are kept
    info = json.loads((out / "feature_info.json").read_text())
    times = info["timestamps"]["demo_001"]
    assert len(times) == length and times[0] == pytest.approx(0.2) and times[-1] == pytest.approx(3.8)


def test_tsp_h5(extraction, tmp_path, capsys):
    out = tmp_path / "tsp"
    try:
        import h5py
    except ImportError:
        assert main(["export", str(extraction), "--to", "tsp-h5", "--out", str(out)]) == 2
        assert "pip install h5py" in capsys.readouterr().err
        return
    assert main(["export", str(extraction), "--to", "tsp-h5", "--out", str(out)]) == 0
    with h5py.File(out / "features.h5") as h5:
        assert sorted(h5) == ["demo_000", "demo_001", "demo_002"] and h5["demo_000"].shape == (19, 32)


def test_bad_export_arguments(extraction, tmp_path, capsys):
    with pytest.raises(ValueError, match="to must be"):
        export_features(extraction, "csv", tmp_path / "x")
    with pytest.raises(ValueError, match="length"):
        export_features(extraction, "gtad", tmp_path / "x", length=1)
    with pytest.raises(ValueError, match="features_dir"):
        export_features(tmp_path, "actionformer", tmp_path / "x")
    with pytest.raises(ValueError, match="annotations"):
        export_features(extraction, "opentad", tmp_path / "x", annotations=tmp_path / "none.json")
    with pytest.raises(ValueError, match="out must differ"):
        export_features(extraction, "actionformer", extraction)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[]")
    assert main(["export", str(extraction), "--to", "opentad", "--out", str(tmp_path / "y"),
                 "--annotations", str(bad_json)]) == 2
    assert "ActivityNet" in capsys.readouterr().err
