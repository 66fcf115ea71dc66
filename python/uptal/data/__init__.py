"""Video data: probing and windowed decoding, the video index and its checks, tar shards, and demo videos.

Importing this package does not import PyAV; it is imported on the first probe, decode or video write.
"""
from .check import CheckRecord, CheckSummary, check_index, summarize
from .decode import (
    VIDEO_ERROR_REASONS,
    BytesSource,
    DecodedWindow,
    Decoder,
    PyAVDecoder,
    VideoError,
    VideoInfo,
    VideoSource,
    decode_window,
    probe,
)
from .demo import DemoVideoSpec, demo_frames, demo_specs, write_demo_videos
from .index import INDEX_STATUSES, TOO_SHORT, VIDEO_EXTENSIONS, IndexEntry, VideoIndex, load_index
from .shards import ShardRecord, ShardSet, iter_shard_records, open_entry_source, read_manifest, write_shards
from .transcode import TranscodeSettings, transcode

__all__ = [
    "VIDEO_ERROR_REASONS",
    "BytesSource",
    "DecodedWindow",
    "Decoder",
    "PyAVDecoder",
    "VideoError",
    "VideoInfo",
    "VideoSource",
    "decode_window",
    "probe",
    "DemoVideoSpec",
    "demo_frames",
    "demo_specs",
    "write_demo_videos",
    "INDEX_STATUSES",
    "TOO_SHORT",
    "VIDEO_EXTENSIONS",
    "IndexEntry",
    "VideoIndex",
    "load_index",
    "CheckRecord",
    "CheckSummary",
    "check_index",
    "summarize",
    "ShardRecord",
    "ShardSet",
    "iter_shard_records",
    "open_entry_source",
    "read_manifest",
    "write_shards",
    "TranscodeSettings",
    "transcode",
]
