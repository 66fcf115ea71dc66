"""Video data: probing and windowed decoding, and procedurally generated demo videos.

Importing this package does not import PyAV; it is imported on the first probe, decode or video write.
"""
from .decode import (
    VIDEO_ERROR_REASONS,
    DecodedWindow,
    Decoder,
    PyAVDecoder,
    VideoError,
    VideoInfo,
    decode_window,
    probe,
)
from .demo import DemoVideoSpec, demo_frames, demo_specs, write_demo_videos

__all__ = [
    "VIDEO_ERROR_REASONS",
    "DecodedWindow",
    "Decoder",
    "PyAVDecoder",
    "VideoError",
    "VideoInfo",
    "decode_window",
    "probe",
    "DemoVideoSpec",
    "demo_frames",
    "demo_specs",
    "write_demo_videos",
]
