"""The only room that touches the compiled modules (_C, _C_cuda) and the Triton kernels.

Each op is registered once with torch.library (``uptal::<op>``) with a fake implementation, so that
torch.compile and torch.library.opcheck work, and has a plain-torch twin ``<op>_ref``. One helper is not a
torch op: ``planes_to_rgb``, the decoder's interleave of numpy views (its twin ``planes_to_rgb_ref`` is numpy).
"""
from .planes_to_rgb import planes_to_rgb, planes_to_rgb_ref
from .region_infonce import RegionInfoNCEStats, region_infonce
from .region_infonce_ref import region_infonce_ref
from .synthesize import implementation_for, synthesize, synthesize_packed
from .synthesize_ref import synthesize_ref

__all__ = ["synthesize", "synthesize_packed", "synthesize_ref", "implementation_for",
           "region_infonce", "region_infonce_ref", "RegionInfoNCEStats", "planes_to_rgb", "planes_to_rgb_ref"]
