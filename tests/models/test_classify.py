"""`uptal classify`: the Kinetics-400 I3D names the real action clips of ../shared/data/videos correctly (top-1).

The three clips and what they show: arm_wrestling.mp4 (mmaction2's demo, Kinetics footage of arm wrestling),
cleaning_pool.mp4 (someone cleaning a pool) and makeup.avi (a woman working on her eyebrows with a pencil,
which Kinetics-400 calls "filling eyebrows"; its nearest runner-up is "applying cream").
"""
from __future__ import annotations

import json

import pytest
import torch

from uptal.cli import main as uptal_main
from uptal.models.command import _window_starts, classify_video, read_class_names

EXPECTED_TOP1 = {
    "arm_wrestling.mp4": "arm wrestling",
    "cleaning_pool.mp4": "cleaning pool",
    "makeup.avi": "filling eyebrows",
}


@pytest.fixture
def class_names(shared_data):
    return read_class_names(shared_data / "annotations" / "kinetics400_classes.txt")


@pytest.mark.slow
@pytest.mark.parametrize("video", ["arm_wrestling.mp4", "makeup.avi"])
def test_centre_clip_top1(video, shared_data, k400_model, class_names):
    prediction = classify_video(shared_data / "videos" / video, k400_model, "center", topk=5)
    (index, probability), *_ = prediction.top
    assert class_names[index] == EXPECTED_TOP1[video]
    assert probability > 0.5
    assert prediction.windows and all(frames == 64 for _, frames in prediction.windows)
    probabilities = [p for _, p in prediction.top]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 5


@pytest.mark.slow
def test_command_json_and_weights_option(shared_data, k400_weights, capsys):
    """The whole command, as a user runs it (the third clip)."""
    video = shared_data / "videos" / "cleaning_pool.mp4"
    classes = shared_data / "annotations" / "kinetics400_classes.txt"
    argv = ["classify", str(video), "--json", "--topk", "3", "--weights", str(k400_weights), "--classes", str(classes)]
    assert uptal_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clip"] == "center" and result["fps"] == pytest.approx(30.0)
    assert [w["frames"] for w in result["windows"]] == [64]
    assert result["windows"][0]["start"] == pytest.approx((300 / 30 - 64 / 30) / 2)  # the centred window
    assert [entry["class"] for entry in result["top"]][0] == EXPECTED_TOP1["cleaning_pool.mp4"]
    assert len(result["top"]) == 3


def test_window_starts():
    assert _window_starts(10.0, 32.0, "center") == [pytest.approx(4.0)]
    assert _window_starts(1.0, 30.0, "center") == [0.0]  # shorter than a window: from the start
    assert _window_starts(6.56, 25.0, "sliding") == [0.0, pytest.approx(2.56)]  # 164 frames: two full windows
    assert _window_starts(1.2, 30.0, "sliding") == [0.0]  # shorter than a window: one short window


def test_bad_arguments_are_errors(tmp_path, capsys):
    video = tmp_path / "video.mp4"  # never opened: the arguments are checked first
    with pytest.raises(ValueError, match="clip"):
        classify_video(video, model=None, clip="middle")
    with pytest.raises(ValueError, match="topk"):
        classify_video(video, model=None, topk=0)
    short = tmp_path / "classes.txt"
    short.write_text("a\nb\n")
    with pytest.raises(ValueError, match="expected 400"):
        read_class_names(short)
    missing_weights = tmp_path / "none.pt"
    assert uptal_main(["classify", str(video), "--weights", str(missing_weights)]) == 2
    assert "no such file" in capsys.readouterr().err


class _RecordingModel:
    """Stands in for I3D: records the clips it sees and gives logits that favour class = window number."""

    def __init__(self):
        self.clips = []

    def forward_logits(self, clip):
        self.clips.append(clip)
        logits = torch.zeros(1, 400)
        logits[0, len(self.clips) - 1] = 10.0
        return logits


def test_sliding_averages_non_overlapping_windows(shared_data):
    model = _RecordingModel()
    prediction = classify_video(shared_data / "videos" / "makeup.avi", model, "sliding", topk=2)  # 164 frames
    assert prediction.windows == [(0.0, 64), (pytest.approx(2.56), 64)]
    assert [tuple(c.shape) for c in model.clips] == [(1, 3, 64, 224, 224)] * 2
    assert all(-1.0 <= c.min() and c.max() <= 1.0 for c in model.clips)  # RGB in [-1, 1]
    (first, p0), (second, p1) = prediction.top
    assert {first, second} == {0, 1} and p0 == pytest.approx(p1)  # the two windows weigh the same


def test_a_video_shorter_than_a_window_gives_one_short_window(shared_data):
    model = _RecordingModel()
    prediction = classify_video(shared_data / "videos" / "realshort.mp4", model, "sliding")  # 36 frames, 320x240
    assert prediction.windows == [(0.0, 36)]
    assert tuple(model.clips[0].shape) == (1, 3, 36, 224, 224)
