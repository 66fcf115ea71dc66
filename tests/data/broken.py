"""A small data set with every kind of bad file training meets, for the index, check and shard tests.

`make_dataset(folder, noise_frames)` writes it and returns a `Dataset` saying what each file must be
classified as (with min_duration=MIN_DURATION). Good videos are tiny H.264 / MPEG-4 files written with PyAV.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from datahelpers import id_frame, write_video

#: The min_duration (s) the expectations assume: the two-frame video (0.08 s) is too short for it.
MIN_DURATION = 0.5


@dataclass(frozen=True)
class Dataset:
    """folder: the data set; expected: absolute path -> status; odd: ok paths that must get warnings;
    txt_list / csv_list: lists naming every file plus one that does not exist; labels: path -> label."""

    folder: Path
    expected: dict[str, str]
    odd: dict[str, str]
    txt_list: Path
    csv_list: Path
    labels: dict[str, str]
    missing_in_list: str


def good_frames(n: int, height: int = 64, width: int = 96) -> np.ndarray:
    """n id frames [n, H, W, 3]: large enough not to count as tiny."""
    return np.stack([id_frame(i, height, width) for i in range(n)])


def write_audio_only(path: Path) -> Path:
    """An MP4 holding one AAC audio stream and no video."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        _mux_one_second_of_silence(container, _mono_aac(container))
    return path


def _mono_aac(container):
    stream = container.add_stream("aac", rate=8000)
    stream.layout = "mono"
    return stream


def _mux_one_second_of_silence(container, stream) -> None:
    import av

    for start in range(0, 8000, 1024):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_music_with_cover(path: Path) -> Path:
    """An MP4 holding AAC audio and a PNG cover picture (an attached picture, as music files carry album art):
    FFmpeg lists the picture as a one-frame video stream."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        audio = _mono_aac(container)
        cover = container.add_stream("png")
        cover.width, cover.height, cover.pix_fmt = 96, 64, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(id_frame(5, 64, 96), format="rgb24")
        picture.pts = 0
        container.mux(cover.encode(picture))
        _mux_one_second_of_silence(container, audio)
    return path


def cut(src: Path, dst: Path, fraction: float) -> Path:
    """The first `fraction` of a file."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def zero_video_payload(src: Path, dst: Path) -> Path:
    """An MP4 whose structure is intact but whose coded video data (the mdat payload) is all zeros."""
    data = bytearray(src.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)
    dst.write_bytes(bytes(data))
    return dst


def drop_moov(src: Path, dst: Path) -> Path:
    """An MP4 (index written last) without its moov box: every box that is left is complete."""
    data = src.read_bytes()
    at = data.find(b"moov") - 4
    assert at > 0 and int.from_bytes(data[at:at + 4], "big") == len(data) - at, "moov must be the last box"
    dst.write_bytes(data[:at])
    return dst


def png_bytes() -> bytes:
    """A PNG image."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(id_frame(3, 64, 96)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_dataset(folder: Path, noise_frames: np.ndarray) -> Dataset:
    """Write the data set (see the module docstring) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir()
    tb = Fraction(1, 25)
    good = {
        "good.mp4": write_video(folder / "good.mp4", good_frames(20), list(range(20)), tb),
        "good.avi": write_video(folder / "good.avi", good_frames(20), list(range(20)), tb, fmt="avi",
                                codec="mpeg4"),
        "sub/nested.mkv": write_video(folder / "sub" / "nested.mkv", good_frames(15), list(range(15)), tb,
                                      fmt="matroska"),
    }
    # odd but usable: 2 fps and 48 px high
    slow = write_video(folder / "slow.mp4", good_frames(4, 48, 96), list(range(4)), Fraction(1, 2))
    noise_mp4 = write_video(folder / "sub" / "noise_source.tmp", noise_frames, list(range(40)), Fraction(1, 10))
    noise_avi = write_video(folder / "sub" / "noise_avi_source.tmp", noise_frames, list(range(40)), Fraction(1, 10),
                            fmt="avi", codec="mpeg4")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    (folder / "image.mp4").write_bytes(png_bytes())
    (folder / "random.mkv").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    (folder / "folder.mp4").mkdir()
    os.symlink(folder / "nowhere.mp4", folder / "dangling.mp4")
    expected = {
        "good.mp4": "ok", "good.avi": "ok", "sub/nested.mkv": "ok", "slow.mp4": "ok",
        "empty.mp4": "empty",
        "half.mp4": "truncated",
        "sub/half.avi": "truncated",
        "text.mp4": "not_a_video",
        "image.mp4": "not_a_video",
        "audio_only.mp4": "not_a_video",
        "music.mp4": "not_a_video",
        "random.mkv": "not_a_video",
        "folder.mp4": "not_a_video",
        "dangling.mp4": "missing",
        "zeroed.mp4": "undecodable",
        "no_moov.mp4": "undecodable",
        "two_frames.mp4": "too_short",
    }
    cut(noise_mp4, folder / "half.mp4", 0.5)
    cut(noise_avi, folder / "sub" / "half.avi", 0.5)
    write_audio_only(folder / "audio_only.mp4")
    write_music_with_cover(folder / "music.mp4")
    zero_video_payload(good["good.mp4"], folder / "zeroed.mp4")
    drop_moov(good["good.mp4"], folder / "no_moov.mp4")
    write_video(folder / "two_frames.mp4", good_frames(2), [0, 1], tb)
    # not listed by a folder scan: other extensions, hidden files, macOS resource forks
    (folder / "notes.txt").write_text("not a video\n")
    (folder / "._good.mp4").write_bytes(b"\x00\x05\x16\x07 resource fork")
    return _with_lists(folder, {str(folder / name): status for name, status in expected.items()},
                       {str(slow): "low frame rate"})


def _with_lists(folder: Path, expected: dict[str, str], odd: dict[str, str]) -> Dataset:
    """Write a TXT and a CSV list naming every file (relative paths) plus one missing file."""
    lists = folder.parent / f"{folder.name}_lists"
    lists.mkdir()
    missing = str(folder / "gone.mp4")
    names = [os.path.relpath(path, lists) for path in [*expected, missing]]
    labels = {path: f"class{i % 3}" for i, path in enumerate([*expected, missing])}
    txt = lists / "videos.txt"
    txt.write_text("# path label\n\n" + "".join(f"{name} {label}\n" for name, label in zip(names, labels.values())))
    csv_list = lists / "videos.csv"
    csv_list.write_text("path,label,duration\n" + "".join(f"{name},{label},\n"
                                                          for name, label in zip(names, labels.values())))
    return Dataset(folder, expected, odd, txt, csv_list, labels, missing)
