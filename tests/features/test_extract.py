"""`uptal extract`: clip arithmetic, frames that line up with time, checkpoints, resume, failures, arguments."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from uptal.cli import main
from uptal.features.extract import (ClipSampling, Preprocessing, extract_video, extract_videos, find_videos,
                                    load_encoder, shard_for_rank)

from featurehelpers import index_encoder

def extract(argv: list[str]) -> int:
    return main(["extract", *argv])


SMALL = ["--backbone", "tiny", "--fps", "10", "--clip-frames", "4", "--clip-stride", "4", "--size", "32",
         "--no-progress"]


def expected_count(num_sampled: int, clip_frames: int, frame_stride: int, clip_stride: int) -> int:
    """The documented formula, written out independently of ClipSampling."""
    span = (clip_frames - 1) * frame_stride + 1
    return 1 + max(0, math.ceil((num_sampled - span) / clip_stride))


# --- arithmetic ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, f, fs, cs, count, padded", [
    (40, 4, 1, 4, 10, 0),    # exact fit
    (37, 4, 1, 4, 10, 3),    # clip 9 covers 36..39: frames 37, 38, 39 repeat frame 36
    (3, 8, 1, 8, 1, 5),      # shorter than one clip: one clip, 5 repeats
    (20, 4, 2, 3, 6, 1),     # span 7, starts 0, 3, ..., 15; clip 5 takes 15, 17, 19, 21: one repeat
])
def test_num_features_and_padding(n, f, fs, cs, count, padded):
    sampling = ClipSampling(fps=10, clip_frames=f, frame_stride=fs, clip_stride=cs)
    assert sampling.num_features(n) == count == expected_count(n, f, fs, cs)
    last = sampling.clip_positions(count - 1)
    assert last[-1] >= n - 1                      # every frame is covered
    if count > 1:
        assert sampling.clip_positions(count - 2)[-1] < n - 1   # and no clip more than needed
    assert sampling.padded_frames(n) == padded == sum(p >= n for p in last)
    assert sampling.clip_positions(count - 1, n)[-1] == n - 1   # padding repeats the last frame


def test_centre_timestamps_formula():
    sampling = ClipSampling(fps=15, clip_frames=16, frame_stride=1, clip_stride=16)   # TSP
    centres = sampling.centre_seconds(3)
    assert centres == pytest.approx([8 / 15, 24 / 15, 40 / 15])


# --- frames line up with the video ---------------------------------------------------------------------------

@pytest.mark.parametrize("fps, clip_frames, frame_stride, clip_stride", [
    (10, 4, 1, 4),     # the video's own rate
    (5, 3, 1, 2),      # half the rate: sampled frame j is source frame 2j; overlapping clips
    (10, 3, 2, 5),     # frame stride 2
])
@pytest.mark.parametrize("chunk_frames", [3, 256])   # streamed in tiny pieces, or in one go: same result
def test_clip_frames_and_timestamps_line_up(index_video, fps, clip_frames, frame_stride, clip_stride, chunk_frames):
    sampling = ClipSampling(fps=fps, clip_frames=clip_frames, frame_stride=frame_stride, clip_stride=clip_stride)
    prep = Preprocessing(size=32, short_side=32, mean=(0.0,) * 3, std=(1 / 255,) * 3)
    features, metadata = extract_video(index_video, index_encoder(clip_frames), sampling, prep, batch_size=2,
                                       chunk_frames=chunk_frames)
    source_frames = np.rint(features).astype(int)                  # [T, F] source frame of every clip frame
    num_sampled = math.ceil(37 * fps / 10)                          # 3.7 s of video
    assert metadata["num_sampled_frames"] == num_sampled
    assert features.shape == (expected_count(num_sampled, clip_frames, frame_stride, clip_stride), clip_frames)
    step = round(10 / fps)                                          # source frames per sampled frame
    for i, frames in enumerate(source_frames):
        positions = [min(i * clip_stride + k * frame_stride, num_sampled - 1) for k in range(clip_frames)]
        assert frames.tolist() == [p * step for p in positions], f"clip {i}"
        # the centre timestamp is the middle of the time the clip's sampled frames cover
        start, end = i * clip_stride / fps, (i * clip_stride + sampling.span) / fps
        assert metadata["timestamps"][i] == pytest.approx((start + end) / 2)
    assert metadata["last_window_padded"] == sampling.padded_frames(num_sampled)


# --- the command line on demo videos ---------------------------------------------------------------------------

def test_extract_command_writes_features_and_metadata(demo_videos, tmp_path):
    out = tmp_path / "features"
    assert extract([str(demo_videos[0].parent), "--out", str(out), "--prefix", "v_", *SMALL]) == 0
    for video in demo_videos:
        features = np.load(out / f"v_{video.stem}.npy")
        metadata = json.loads((out / "metadata" / f"{video.stem}.json").read_text())
        assert features.dtype == np.float32 and features.shape == (10, 32)   # 40 frames / stride 4
        assert np.isfinite(features).all()
        assert metadata["num_features"] == 10 and metadata["feature_dim"] == 32
        assert metadata["timestamps"] == pytest.approx([0.2 + 0.4 * i for i in range(10)])
        assert metadata["duration"] == pytest.approx(4.0)
        assert metadata["backbone"] == "tiny" and metadata["last_window_padded"] == 0
        for key in ("fps", "clip_frames", "frame_stride", "clip_stride", "checkpoint_sha256", "preprocessing",
                    "uptal_version"):
            assert key in metadata
    assert not [p for p in out.rglob(".*.tmp")]


def test_preset_tsp_sets_sampling(demo_videos, tmp_path):
    out = tmp_path / "tsp"
    assert extract([str(demo_videos[0]), "--out", str(out), "--backbone", "tiny", "--preset", "tsp", "--size", "32",
                 "--no-progress"]) == 0
    metadata = json.loads((out / "metadata" / "demo_000.json").read_text())
    assert (metadata["fps"], metadata["clip_frames"], metadata["clip_stride"]) == (15.0, 16, 16)
    assert metadata["num_sampled_frames"] == 60 and metadata["num_features"] == expected_count(60, 16, 1, 16)
    assert metadata["last_window_padded"] == 4


# --- checkpoints --------------------------------------------------------------------------------------------------

@pytest.fixture
def pretrain_checkpoint(tmp_path):
    from uptal.config import ModelConfig, PalConfig, PretrainConfig, to_dict
    from uptal.train.engine import build_moco
    torch.manual_seed(0)
    config = PretrainConfig(pal=PalConfig(frames=4, size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)),
                            model=ModelConfig(backbone="tiny", queue_size=16))
    moco = build_moco(config.model)
    with torch.no_grad():   # non-trivial BatchNorm statistics, so a wrong load shows
        for name, buffer in moco.named_buffers():
            if name.endswith("running_mean"):
                buffer.uniform_(-0.5, 0.5)
    path = tmp_path / "step-000000010.pt"
    torch.save({"model": moco.state_dict(), "config": to_dict(config)}, path)
    return path, moco


def test_extract_from_pretrain_checkpoint(demo_videos, tmp_path, pretrain_checkpoint):
    path, moco = pretrain_checkpoint
    out = tmp_path / "features"
    # on the CPU, like the expected features below (CUDA extracts in bf16: test_cuda_bf16_features_...)
    assert extract([str(demo_videos[0]), "--out", str(out), "--checkpoint", str(path), "--fps", "10",
                    "--device", "cpu", "--no-progress"]) == 0
    metadata = json.loads((out / "metadata" / "demo_000.json").read_text())
    # clip length and size come from the checkpoint's pal section, normalisation too
    assert (metadata["clip_frames"], metadata["preprocessing"]["size"]) == (4, 32)
    assert metadata["preprocessing"]["mean"] == [0.4, 0.5, 0.6]
    assert metadata["checkpoint_sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    # the features are those of the checkpoint's query backbone on identically prepared clips
    backbone = moco.encoder_q.backbone.eval()
    encoder = load_encoder(backbone="tiny")
    encoder.backbone, encoder.mean, encoder.std = backbone, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    sampling = ClipSampling(fps=10, clip_frames=4, clip_stride=4)
    prep = Preprocessing(size=32, short_side=32, mean=encoder.mean, std=encoder.std)
    expected, _ = extract_video(demo_videos[0], encoder, sampling, prep)
    np.testing.assert_allclose(np.load(out / "demo_000.npy"), expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_backbone_mismatch_is_an_error(pretrain_checkpoint):
    with pytest.raises(ValueError, match="backbone"):
        load_encoder(checkpoint=pretrain_checkpoint[0], backbone="r3d_18")


# --- resume and failures ---------------------------------------------------------------------------------------------

def _run(videos, out, encoder):
    sampling = ClipSampling(fps=10, clip_frames=4, clip_stride=4)
    prep = Preprocessing(size=32, short_side=32)
    return extract_videos(videos, out, encoder, sampling, prep, batch_size=4)


def test_rerun_skips_finished_and_redoes_corrupted(demo_videos, tmp_path):
    encoder = load_encoder(backbone="tiny")
    out = tmp_path / "features"
    first = _run(demo_videos, out, encoder)
    assert sorted(first.done) == [v.stem for v in demo_videos] and not first.failed
    kept = out / "demo_000.npy"
    kept_time = kept.stat().st_mtime_ns
    corrupted = out / "demo_001.npy"
    corrupted.write_bytes(corrupted.read_bytes()[:100])            # a half-written file
    (out / "metadata" / "demo_002.json").unlink()                   # killed between .npy and metadata
    second = _run(demo_videos, out, encoder)
    assert second.skipped == ["demo_000"] and sorted(second.done) == ["demo_001", "demo_002"]
    assert kept.stat().st_mtime_ns == kept_time
    assert np.load(corrupted).shape == (10, 32)


def test_rerun_with_other_settings_redoes(demo_videos, tmp_path):
    encoder = load_encoder(backbone="tiny")
    out = tmp_path / "features"
    _run(demo_videos[:1], out, encoder)
    other = extract_videos(demo_videos[:1], out, encoder, ClipSampling(fps=10, clip_frames=4, clip_stride=2),
                           Preprocessing(size=32, short_side=32))
    assert other.done == ["demo_000"] and np.load(out / "demo_000.npy").shape == (19, 32)


def test_broken_video_is_reported_and_others_finish(demo_videos, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 10)
    out = tmp_path / "features"
    code = extract([str(demo_videos[0]), str(broken), str(tmp_path / "missing.mp4"), "--out", str(out), *SMALL])
    assert code == 1
    printed = capsys.readouterr().out
    assert "1 extracted" in printed and "2 failed" in printed
    assert "FAILED broken" in printed and "FAILED missing" in printed
    assert (out / "demo_000.npy").is_file() and not (out / "broken.npy").exists()


def test_h5_without_h5py_is_a_clear_error(demo_videos, tmp_path, capsys):
    try:
        import h5py
    except ImportError:
        assert extract([str(demo_videos[0]), "--out", str(tmp_path), "--format", "npy,h5", *SMALL]) == 2
        assert "pip install h5py" in capsys.readouterr().err
    else:
        assert extract([str(demo_videos[0]), "--out", str(tmp_path), "--format", "npy,h5", *SMALL]) == 0
        with h5py.File(tmp_path / "features.h5") as h5:
            assert h5["demo_000"].shape == (10, 32)


# --- arguments and sharding -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", [
    ({"fps": 0}, "fps"), ({"fps": float("nan")}, "fps"), ({"clip_frames": 0}, "clip_frames"),
    ({"frame_stride": -1}, "frame_stride"), ({"clip_stride": 1.5}, "clip_stride"),
])
def test_bad_sampling_names_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ClipSampling(**kwargs)


def test_random_backbone_is_the_same_on_every_run():
    first, second = load_encoder(backbone="tiny"), load_encoder(backbone="tiny")
    for a, b in zip(first.backbone.state_dict().values(), second.backbone.state_dict().values()):
        assert torch.equal(a, b)
    assert first.source == "random(seed=0)"


def test_bad_preprocessing_and_sources():
    with pytest.raises(ValueError, match="short_side"):
        Preprocessing(size=112, short_side=100)
    with pytest.raises(ValueError, match="weights"):
        load_encoder(weights="imagenet")
    with pytest.raises(ValueError, match="backbone"):
        load_encoder()
    with pytest.raises(ValueError, match="backbone"):
        load_encoder(backbone="resnet9000")


def _tiny_run(demo_videos, tmp_path, decode_workers: int, batch_size: int = 4):
    encoder = load_encoder(None, None, "tiny")
    sampling, prep = ClipSampling(fps=10, clip_frames=4, clip_stride=4), Preprocessing(size=32)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 10)
    videos = [demo_videos[0], broken, *demo_videos[1:]]
    out = tmp_path / f"workers{decode_workers}"
    result = extract_videos(videos, out, encoder, sampling, prep, batch_size=batch_size, device="cpu",
                            chunk_frames=16, decode_workers=decode_workers)
    return result, {name: np.load(out / f"{name}.npy") for name in result.done}


def test_decoding_threads_give_the_same_features_in_the_same_order(demo_videos, tmp_path):
    serial, serial_features = _tiny_run(demo_videos, tmp_path, 0)
    for workers in (1, 3):
        threaded, features = _tiny_run(demo_videos, tmp_path, workers)
        assert threaded.done == serial.done == [v.stem for v in demo_videos]
        assert list(threaded.failed) == list(serial.failed) == ["broken"]
        for name, array in serial_features.items():
            assert np.array_equal(features[name], array), (workers, name)
    with pytest.raises(ValueError, match="decode_workers"):
        _tiny_run(demo_videos, tmp_path, -1)


def test_a_video_failing_half_way_frees_its_decoding_thread(demo_videos, tmp_path, monkeypatch):
    """The failed video's clips fill its queue; unless its thread gives up on them, the one thread never
    starts the next video and the run hangs."""
    import threading

    from uptal.features import extract as extract_module
    real_encode, calls = extract_module._encode, []

    def encode_failing_first(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model failed")
        return real_encode(*args)

    monkeypatch.setattr(extract_module, "_encode", encode_failing_first)
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(result=_tiny_run(demo_videos, tmp_path, 1, 1)[0]),
                           daemon=True)
    run.start()
    run.join(timeout=120)
    assert not run.is_alive(), "extraction hung after a video failed half-way"
    result = outcome["result"]
    assert result.failed.keys() == {demo_videos[0].stem, "broken"} and result.done == [v.stem for v in demo_videos[1:]]


def test_bad_command_line_values(demo_videos, tmp_path, capsys):
    assert extract([str(demo_videos[0]), "--out", str(tmp_path), *SMALL, "--format", "csv"]) == 2
    assert "format" in capsys.readouterr().err
    assert extract([str(demo_videos[0]), "--out", str(tmp_path), *SMALL, "--clip-stride", "0"]) == 2
    assert "clip_stride" in capsys.readouterr().err
    assert extract([str(demo_videos[0]), "--out", str(tmp_path), *SMALL, "--decode-workers", "-1"]) == 2
    assert "--decode-workers" in capsys.readouterr().err


def test_find_videos_and_sharding(demo_videos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# my videos\n" + "".join(f"{v}\n" for v in demo_videos) + "\n")
    found = find_videos([listing])
    assert found == list(demo_videos)
    assert find_videos([demo_videos[0].parent]) == sorted(demo_videos)
    shards = [shard_for_rank(found, rank, 2) for rank in range(2)]
    assert shards == [[found[0], found[2]], [found[1]]]
    with pytest.raises(ValueError, match="rank"):
        shard_for_rank(found, 2, 2)
    with pytest.raises(ValueError, match="share"):
        find_videos([demo_videos[0], demo_videos[0]])


def test_rank_environment_shards_the_command(demo_videos, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "features"
    assert extract([str(demo_videos[0].parent), "--out", str(out), *SMALL]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == ["demo_001.npy"]


# --- real video, K400 I3D (weights converted on first use, as `uptal weights i3d-k400` does) ---------------------

def test_k400_i3d_on_a_real_video(shared_data, k400_weights, tmp_path):
    from uptal.features.extract import stream_clips
    videos = sorted((shared_data / "videos").glob("*.mp4"))
    if not videos:
        pytest.skip("no shared videos")
    encoder = load_encoder(weights="i3d-k400")
    assert encoder.mean == (0.5,) * 3 and encoder.std == (0.5,) * 3      # RGB in [-1, 1]
    sampling = ClipSampling(fps=25, clip_frames=16, clip_stride=16)
    prep = Preprocessing(size=112, short_side=128, mean=encoder.mean, std=encoder.std)
    clips = []
    for clip in stream_clips(videos[0], sampling, prep, chunk_frames=20):   # the first two clips only
        clips.append(clip)
        if len(clips) == 2:
            break
    with torch.no_grad():
        features = encoder.backbone(prep.normalise(torch.stack(clips)))       # [2, 1024]
    assert features.shape == (2, 1024) and torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])


@pytest.mark.gpu
def test_cuda_bf16_features_agree_with_cpu_float32(demo_videos):
    """On CUDA the backbone runs under bf16 autocast: its features must stay close to the float32 ones."""
    encoder = load_encoder(backbone="i3d")
    sampling = ClipSampling(fps=10, clip_frames=8, clip_stride=4)
    prep = Preprocessing(size=112, short_side=112, mean=encoder.mean, std=encoder.std)
    with torch.no_grad():
        cpu, _ = extract_video(demo_videos[0], encoder, sampling, prep, batch_size=4, device="cpu")   # [T, C]
        on_gpu = replace(encoder, backbone=copy.deepcopy(encoder.backbone).cuda())
        gpu, _ = extract_video(demo_videos[0], on_gpu, sampling, prep, batch_size=4, device="cuda")   # [T, C]
    cpu, gpu = torch.from_numpy(cpu), torch.from_numpy(gpu)
    assert gpu.dtype == torch.float32 and gpu.shape == cpu.shape
    relative = float((gpu - cpu).norm() / cpu.norm())
    cosine = torch.nn.functional.cosine_similarity(gpu, cpu, dim=1)                                 # [T]
    print(f"bf16 CUDA vs fp32 CPU: relative error {relative:.4f}, min cosine {float(cosine.min()):.5f}")
    assert relative < 0.05 and float(cosine.min()) > 0.995
