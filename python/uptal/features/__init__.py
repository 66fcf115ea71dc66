"""Features for temporal localization: `uptal extract` (clip features of untrimmed videos) and `uptal export`
(the layouts ActionFormer, OpenTAD, G-TAD, BMN and TSP read)."""
from .export import TARGETS, export_features, interpolate_time, read_feature_set
from .extract import (PRESETS, ClipSampling, Encoder, ExtractionResult, Preprocessing, extract_video,
                      extract_videos, find_videos, load_encoder, shard_for_rank, stream_clips)

__all__ = [
    "PRESETS", "ClipSampling", "Preprocessing", "Encoder", "ExtractionResult", "load_encoder", "find_videos",
    "shard_for_rank", "stream_clips", "extract_video", "extract_videos",
    "TARGETS", "export_features", "interpolate_time", "read_feature_set",
]
