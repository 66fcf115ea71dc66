"""The equivariance probe: sequence construction, clip regions, the standout score, the picture and the CLI."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from uptal.cli import main as uptal_main
from uptal.data import demo_specs, write_demo_videos
from uptal.eval.equivariance import (
    FIGURE_DPI, PANEL_INCHES, TITLE_INCHES, ProbeSequence, build_probe_sequence, clip_regions,
    cosine_similarity_matrix, parse_encoder_spec, plot_similarity_maps, run_equivariance_probe, standout_scores,
)
from uptal.features.extract import ClipSampling

DEMO = {"num_videos": 1, "num_frames": 100, "height": 64, "width": 86}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------- sequence


def test_sequence_layout_and_exact_resampling():
    # A synthetic video whose frame k is filled with the value k: every output frame says where it came from.
    frames = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1).expand(30, 2, 2, 3)
    sequence = build_probe_sequence(30, 10, 17)          # action = frames 10..16 (7 frames), background 23
    shown = sequence.frames(frames)[:, 0, 0, 0].tolist()
    assert sequence.fast_copy == (7, 11)                   # 23 // 3 = 7 background frames lead
    assert sequence.slow_copy == (19, 33)                  # 7 lead + 4 fast + 8 middle (2 * 23 // 3 - 7)
    assert sequence.num_frames == 23 + 4 + 14
    assert shown[slice(*sequence.fast_copy)] == [10, 12, 14, 16]                    # every other frame
    assert shown[slice(*sequence.slow_copy)] == [f for f in range(10, 17) for _ in range(2)]  # each twice
    background = shown[:7] + shown[11:19] + shown[33:]
    assert background == list(range(10)) + list(range(17, 30))   # the rest, in order, each once


def test_max_background_keeps_the_frames_nearest_the_action():
    sequence = build_probe_sequence(100, 50, 60, max_background=6)
    background = np.concatenate([sequence.source_indices[:sequence.fast_copy[0]],
                                 sequence.source_indices[sequence.fast_copy[1]:sequence.slow_copy[0]],
                                 sequence.source_indices[sequence.slow_copy[1]:]])
    assert background.tolist() == [47, 48, 49, 60, 61, 62]


@pytest.mark.parametrize("start,end", [(5, 5), (7, 3), (-1, 4), (0, 31)])
def test_bad_segment_frames_raise_naming_segment(start, end):
    with pytest.raises(ValueError, match="segment"):
        build_probe_sequence(30, start, end)


def test_segment_covering_the_whole_video_is_refused():
    with pytest.raises(ValueError, match="segment covers the whole video"):
        build_probe_sequence(30, 0, 30)


def test_clip_regions_use_half_span_rule():
    sequence = ProbeSequence(np.arange(40), fast_copy=(8, 12), slow_copy=(24, 32))
    regions = clip_regions(sequence, ClipSampling(clip_frames=8, clip_stride=4))   # clip i: [4i, 4i + 8)
    # clips 1 [4, 12) and 2 [8, 16) hold 4 of 8 fast frames; clips 5..7 hold >= 4 slow frames;
    # clip 4 [16, 24) and clip 8 [32, 40) end / start exactly at the slow copy: outside
    assert regions == {"fast": [1, 2], "slow": [5, 6, 7], "outside": [0, 3, 4, 8]}
    sequence = ProbeSequence(np.arange(60), fast_copy=(8, 12), slow_copy=(40, 48))
    regions = clip_regions(sequence, ClipSampling(clip_frames=8, clip_stride=4))
    # clip 8 [32, 40) ends where the slow copy starts: no frame of it, so outside
    assert regions == {"fast": [1, 2], "slow": [9, 10, 11], "outside": [0, 3, 4, 5, 6, 7, 8, 12, 13]}


def test_clips_that_only_graze_a_copy_are_neither_inside_nor_outside():
    sequence = ProbeSequence(np.arange(24), fast_copy=(9, 12), slow_copy=(20, 24))
    regions = clip_regions(sequence, ClipSampling(clip_frames=8, clip_stride=4))
    # clips 1 [4, 12) and 2 [8, 16) hold 3 fast frames (< 4): left out of both means
    assert 1 not in sum(regions.values(), []) and 2 not in sum(regions.values(), [])
    assert regions == {"fast": [], "slow": [4], "outside": [0, 3]}   # clip 4 [16, 24): 4 slow frames


# ---------------------------------------------------------------------------------------------- score


def test_score_is_one_for_identical_action_and_orthogonal_background():
    regions = {"fast": [2, 3], "slow": [7, 8, 9], "outside": [0, 1, 5, 11]}
    features = np.zeros((12, 4))
    features[[2, 3, 7, 8, 9], 0] = 3.0                    # the action: one direction, any length
    features[[0, 1, 5, 11], 1] = 1.0                      # the background: an orthogonal one
    features[[4, 6, 10], 2] = 1.0                         # grazing clips: ignored by the score
    scores = standout_scores(cosine_similarity_matrix(features), regions)
    assert scores["standout"] == pytest.approx(1.0)
    assert scores["cross_copy"] == pytest.approx(1.0)
    assert scores["inside_outside"] == pytest.approx(0.0)


def test_score_is_near_zero_for_random_features():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((60, 512))
    regions = {"fast": list(range(5, 12)), "slow": list(range(30, 50)), "outside": list(range(0, 4))
               + list(range(14, 28)) + list(range(52, 60))}
    scores = standout_scores(cosine_similarity_matrix(features), regions)
    assert abs(scores["standout"]) < 0.02                  # std of one cosine ~ 1/sqrt(512) = 0.044, averaged
    assert abs(scores["within_action"]) < 0.02


def test_score_is_negative_when_the_action_looks_like_background_less_than_itself():
    regions = {"fast": [0], "slow": [1], "outside": [2]}
    features = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])   # the two copies opposite
    assert standout_scores(cosine_similarity_matrix(features), regions)["standout"] == pytest.approx(-1.0)


def test_cosine_similarity_rejects_bad_shapes():
    with pytest.raises(ValueError, match="features"):
        cosine_similarity_matrix(np.zeros(5))


# ---------------------------------------------------------------------------------------------- encoders


def test_encoder_specs():
    assert parse_encoder_spec("i3d-k400") == {"weights": "i3d-k400"}
    assert parse_encoder_spec("backbone:tiny") == {"backbone": "tiny"}
    assert parse_encoder_spec("checkpoint:runs/a:b.pt") == {"checkpoint": "runs/a:b.pt"}
    for bad in ("tiny", "backbone:", "weights:i3d", "i3d-k600"):
        with pytest.raises(ValueError, match="encoder"):
            parse_encoder_spec(bad)


# ---------------------------------------------------------------------------------------------- picture


def test_png_is_written_with_the_promised_size(tmp_path):
    sequence = build_probe_sequence(40, 15, 23)
    sampling = ClipSampling(clip_frames=4, clip_stride=2)
    maps = [np.eye(10), np.random.default_rng(1).uniform(-1, 1, (10, 10))]
    path = plot_similarity_maps(maps, ["a", "b"], sequence, sampling, tmp_path / "maps.png")
    assert png_size(path) == (round(2 * PANEL_INCHES * FIGURE_DPI), round((PANEL_INCHES + TITLE_INCHES) * FIGURE_DPI))
    import matplotlib.image
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.05                              # something was drawn, not a blank canvas


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory) -> tuple[Path, tuple[float, float], float]:
    folder = tmp_path_factory.mktemp("equivariance_demo")
    path = write_demo_videos(folder, **DEMO)[0]
    spec = demo_specs(**DEMO)[0]
    return path, spec.action_segment_sec, spec.num_frames / spec.fps


def test_cli_end_to_end_with_tiny_backbone(demo_video, tmp_path, capsys):
    path, (start, end), _ = demo_video
    out = tmp_path / "out"
    code = uptal_main(["probe", "equivariance", str(path), "--segment", str(start), str(end), "--out", str(out),
                       "--encoder", "backbone:tiny", "--encoder", "backbone:tiny", "--size", "64"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "standout" in printed and printed.count("backbone:tiny") == 2
    record = json.loads((out / "equivariance.json").read_text())
    fast, slow = record["sequence"]["fast_copy_frames"], record["sequence"]["slow_copy_frames"]
    action_frames = record["action_source_frames"][1] - record["action_source_frames"][0]
    assert action_frames == round((end - start) * 25)
    assert fast[1] - fast[0] == (action_frames + 1) // 2 and slow[1] - slow[0] == 2 * action_frames
    assert fast[1] <= slow[0]                                 # the fast copy comes earlier
    assert record["clip_regions"]["fast"] and record["clip_regions"]["slow"] and record["clip_regions"]["outside"]
    first, second = record["encoders"]
    assert np.isfinite(first["standout"]) and -2.0 <= first["standout"] <= 2.0
    assert first["standout"] == pytest.approx(second["standout"])   # the same seeded network twice
    assert first["num_clips"] == ClipSampling(clip_stride=4).num_features(record["sequence"]["num_frames"])
    assert record["settings"]["clip_stride"] == 4 and "standout" in record["score_definition"]
    assert png_size(out / "equivariance.png") == (round(2 * PANEL_INCHES * FIGURE_DPI),
                                                  round((PANEL_INCHES + TITLE_INCHES) * FIGURE_DPI))


@pytest.mark.parametrize("segment,message", [((3.0, 5.0), "outside the video"), ((2.0, 2.0), "END must be > START"),
                                             ((2.0, 1.0), "END must be > START"), ((-0.5, 1.0), "outside the video")])
def test_bad_segments_raise_naming_segment(demo_video, tmp_path, segment, message):
    path, _, duration = demo_video
    assert duration == 4.0                                   # 100 frames at 25 fps: (3, 5) ends past it
    with pytest.raises(ValueError, match=f"segment.*{message}"):
        run_equivariance_probe(path, segment, ["backbone:tiny"], tmp_path, size=64)
    assert not (tmp_path / "equivariance.json").exists()


def test_unknown_encoder_is_refused_before_any_work(demo_video, tmp_path, capsys):
    path, (start, end), _ = demo_video
    with pytest.raises(ValueError, match="encoder"):
        run_equivariance_probe(path, (start, end), ["backbone:tiny", "resnet"], tmp_path, size=64)
    code = uptal_main(["probe", "equivariance", str(path), "--segment", str(start), str(end), "--out",
                       str(tmp_path), "--encoder", "backbone:nope", "--size", "64"])
    assert code == 2 and "backbone name must be one of" in capsys.readouterr().err
    assert not (tmp_path / "equivariance.png").exists()
