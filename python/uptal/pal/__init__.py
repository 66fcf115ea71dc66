"""PAL: the plan of a batch of synthetic videos and the entry point that synthesizes it."""
from .plan import PalPlan, build_plan, frame_run, gaussian_taps
from .synthesis import synthesize_batch

__all__ = ["PalPlan", "build_plan", "frame_run", "gaussian_taps", "synthesize_batch"]
