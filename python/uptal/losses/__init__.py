"""Training objectives: PAL's region InfoNCE (supervised TAC/TSP heads later)."""
from uptal.ops import RegionInfoNCEStats

from .region import RegionInfoNCE

__all__ = ["RegionInfoNCE", "RegionInfoNCEStats"]
