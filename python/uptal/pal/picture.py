"""Pictures of synthetic PAL videos: what the network is trained on, with the pasted regions marked."""
from __future__ import annotations

from pathlib import Path

import torch

from .plan import PalPlan

QUERY_COLOUR, KEY_COLOUR = (230, 40, 40), (40, 120, 255)


def to_uint8(clips: torch.Tensor, plan: PalPlan) -> torch.Tensor:
    """Synthetic clips [M, 3, J*F, S, S] as uint8 on the CPU: normalised float output is mapped back to 0..255."""
    clips = clips.detach().cpu()
    if clips.dtype == torch.uint8:
        return clips
    mean = plan.mean.view(1, 3, 1, 1, 1) * 255.0
    std = plan.std.view(1, 3, 1, 1, 1) * 255.0
    return (clips.float() * std + mean).round().clamp(0, 255).to(torch.uint8)


def render_batch(clips: torch.Tensor, plan: PalPlan, max_pairs: int = 4):
    """A PIL image: one row per synthetic video (query, then key, for the first sources), one column per clip
    (its middle frame); clips inside the pasted region get a red (query) or blue (key) border."""
    from PIL import Image, ImageDraw

    clips = to_uint8(clips, plan)
    size, gap, label = plan.size, 4, 90
    pairs = min(max_pairs, plan.num_sources)
    rows = [r for i in range(pairs) for r in (i, plan.num_sources + i)]
    canvas = Image.new("RGB", (label + plan.clips * (size + gap), len(rows) * (size + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for row, m in enumerate(rows):
        top = row * (size + gap)
        is_query = m < plan.num_sources
        draw.text((4, top + size // 2 - 12), f"{'query' if is_query else 'key'} {m % plan.num_sources}\n"
                  f"on video {int(plan.background[m])}", fill=(0, 0, 0))
        start, end = plan.region[m].tolist()
        for clip in range(plan.clips):
            frame = clips[m, :, clip * plan.frames + plan.frames // 2]         # [3, S, S]
            left = label + clip * (size + gap)
            canvas.paste(Image.fromarray(frame.permute(1, 2, 0).numpy()), (left, top))
            if start <= clip <= end:
                colour = QUERY_COLOUR if is_query else KEY_COLOUR
                draw.rectangle([left, top, left + size - 1, top + size - 1], outline=colour, width=3)
    return canvas


def save_picture(clips: torch.Tensor, plan: PalPlan, path: str | Path, max_pairs: int = 4) -> Path:
    """`render_batch` written as a PNG."""
    render_batch(clips, plan, max_pairs).save(path)
    return Path(path)
