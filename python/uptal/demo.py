"""`uptal demo`: the embedded default job until the trainer exists.

Writes the procedurally generated demo videos, decodes each once at the working size, plans a PAL batch (every
video is an action source and a background), synthesizes it with the fastest implementation on this machine,
and saves what a user needs to see it: a picture of the synthetic videos with their pasted regions marked,
the plan (printable and replayable), and a summary.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .config import PalConfig
from .data.decode import decode_window
from .data.demo import write_demo_videos
from .ops import implementation_for
from .pal import build_plan, synthesize_batch
from .pal.picture import save_picture

WORKING_HEIGHT, WORKING_WIDTH, WORKING_FPS = 128, 171, 25.0


def run_demo(out: str | Path, num_videos: int = 8, seed: int = 0, config: PalConfig = PalConfig()) -> int:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = write_demo_videos(out / "videos", num_videos=num_videos, seed=seed)
    written = time.perf_counter()

    windows = [decode_window(p, 0.0, 256, WORKING_FPS, WORKING_HEIGHT, WORKING_WIDTH) for p in paths]
    max_frames = max(w.length for w in windows)
    videos = torch.zeros(len(windows), max_frames, WORKING_HEIGHT, WORKING_WIDTH, 3, dtype=torch.uint8)
    for i, window in enumerate(windows):
        videos[i, :window.length] = window.frames[:window.length]             # [T, H, W, 3]
    lengths = [w.length for w in windows]
    decoded = time.perf_counter()

    plan = build_plan(torch.Generator().manual_seed(seed), lengths, WORKING_HEIGHT, WORKING_WIDTH, config)
    clips = synthesize_batch(videos, lengths, plan, out_dtype=torch.uint8)    # [2B, 3, J*F, S, S]
    synthesized = time.perf_counter()

    plan.save(out / "plan.pt")
    (out / "plan.txt").write_text(plan.describe(max_rows=plan.num_outputs) + "\n")
    picture = out / "pal_batch.png"
    save_picture(clips, plan, picture)

    implementation, why = implementation_for("cpu")
    print(plan.describe())
    print(f"\n{len(paths)} demo videos written in {written - started:.1f}s, decoded once each in "
          f"{decoded - written:.1f}s ({sum(lengths)} frames at {WORKING_HEIGHT}x{WORKING_WIDTH})")
    print(f"{plan.num_outputs} synthetic videos {list(clips.shape)} synthesized in "
          f"{synthesized - decoded:.2f}s by {implementation} ({why})")
    print(f"picture: {picture}  (rows: query/key pairs; red/blue frames mark the pasted region)")
    print(f"plan:    {out / 'plan.txt'}, replay with uptal.pal.PalPlan.load('{out / 'plan.pt'}')")
    return 0

