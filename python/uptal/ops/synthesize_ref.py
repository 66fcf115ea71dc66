"""`synthesize_ref`: the plain-torch specification of the PAL synthesis op, and the oracle of its tests.

For every synthetic video m and output frame t it does, in this order (all arithmetic in float32 on the
0..255 scale, every step one IEEE operation in the order written here, so that the C++ and CUDA kernels,
which share csrc/synth_math.h, reproduce it bit for bit):

1. crop + resize + flip: bilinear sampling (align_corners=False, edge-clamped) of the crop box
   (y0, x0, scale_y, scale_x) of the background frame; a flipped video samples column S-1-x.
2. paste: where the plan has an action frame, the same sampling of it, blended
   out = beta * action + (1 - beta) * background.
3. colour jitter, when on: brightness, contrast, saturation and hue in the plan's order
   (torchvision's formulas; the contrast mean is the mean of the frame's quantised grey, floor(grey * 256),
   summed exactly in int64, so it does not depend on the summation order).
4. grayscale, when on: grey = 0.2989 r + 0.587 g + 0.114 b in all three channels.
5. Gaussian blur, when on: separable, horizontal then vertical, reflect padding, taps accumulated in order.
6. clamp to [0, 255]; uint8 output is round-half-even of that; float output is x * scale_c + shift_c
   (scale = 1 / (255 std), shift = -mean / std); bfloat16 is the float result rounded to nearest even.
"""
from __future__ import annotations

import torch

from .synthesize_layout import Col, JITTER_BRIGHTNESS, JITTER_CONTRAST, JITTER_HUE, JITTER_SATURATION, blur_radius

# float32 values of the grey weights; csrc/synth_math.h holds the same values as hex floats.
GREY_R, GREY_G, GREY_B = 0.2989000082015991, 0.5870000123977661, 0.11400000005960464


def synthesize_ref(videos: torch.Tensor, sources: torch.Tensor, frames: torch.Tensor, params: torch.Tensor,
                   norm: torch.Tensor, size: int, out_dtype: torch.dtype) -> torch.Tensor:
    """uint8 videos [N, T, H, W, 3] + packed plan -> synthetic clips [M, 3, J*F, S, S] of `out_dtype`.

    sources [M, 2] (background, action video), frames [M, 2, J*F] (frame of each; action -1 = none),
    params [M, P] float32 (columns in synthesize_layout.Col), norm [2, 3] float32 (scale, shift).
    No validation here: the public entry point `uptal.ops.synthesize` validates.
    """
    outputs = [_synthesize_one(videos, sources[m], frames[m], params[m], norm, size, out_dtype)
               for m in range(sources.shape[0])]
    return torch.stack(outputs)


def _synthesize_one(videos, sources, frames, p, norm, size, out_dtype):
    height, width = videos.shape[2], videos.shape[3]
    rows = _sample_positions(p[Col.CROP_Y0], p[Col.SCALE_Y], size, height, flip=False)
    cols = _sample_positions(p[Col.CROP_X0], p[Col.SCALE_X], size, width, flip=bool(p[Col.FLIP] > 0))
    sources, frames = sources.tolist(), frames.long()

    background = videos[sources[0]][frames[0]]                 # [JF, H, W, 3] uint8
    x = _bilinear(background, rows, cols)                                 # [JF, 3, S, S]
    pasted = frames[1] >= 0                                               # [JF]
    if bool(pasted.any()):
        action = _bilinear(videos[sources[1]][frames[1][pasted]], rows, cols)
        beta = p[Col.BETA]
        x[pasted] = beta * action + (1 - beta) * x[pasted]

    if p[Col.JITTER_ON] > 0:
        for op in p[Col.ORDER0:Col.ORDER0 + 4].long().tolist():
            x = _JITTER[op](x, p)
    if p[Col.GRAYSCALE] > 0:
        x = _grey(x).expand_as(x)
    if p[Col.BLUR_ON] > 0:
        radius = blur_radius(p.shape[0])
        taps = p[Col.BLUR0:Col.BLUR0 + 2 * radius + 1]
        x = _blur_rows(_blur_cols(x, taps, radius), taps, radius)
    x = x.clamp(0, 255)
    x = x.permute(1, 0, 2, 3)                                             # [3, JF, S, S]
    if out_dtype == torch.uint8:
        return torch.round(x).to(torch.uint8)
    scale, shift = norm[0].view(3, 1, 1, 1), norm[1].view(3, 1, 1, 1)
    return (x * scale + shift).to(out_dtype)


def _sample_positions(start, scale, size, extent, flip):
    """Source coordinate of every output pixel along one axis: (index0, index1, weight1), each [S]."""
    o = torch.arange(size, dtype=torch.float32, device=start.device)
    f = start + (o + 0.5) * scale - 0.5
    f = f.clamp(0, extent - 1)
    floor = torch.floor(f)
    weight = f - floor
    index0 = floor.long()
    index1 = (index0 + 1).clamp(max=extent - 1)
    if flip:
        return index0.flip(0), index1.flip(0), weight.flip(0)
    return index0, index1, weight


def _bilinear(frames_uint8, rows, cols):
    """frames [T, H, W, 3] uint8 -> [T, 3, S, S] float32, sampled at rows x cols."""
    y0, y1, wy = rows
    x0, x1, wx = cols
    f = frames_uint8.permute(0, 3, 1, 2)                                 # [T, 3, H, W]

    def tap(ys, xs):
        return f[:, :, ys[:, None], xs[None, :]].float()                 # [T, 3, S, S]

    wx, wy = wx.view(1, 1, 1, -1), wy.view(1, 1, -1, 1)
    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def _grey(x):
    """[T, 3, S, S] -> [T, 1, S, S]."""
    return (x[:, 0:1] * GREY_R + x[:, 1:2] * GREY_G) + x[:, 2:3] * GREY_B


def _brightness(x, p):
    return (x * p[Col.BRIGHTNESS]).clamp(0, 255)


def _contrast(x, p):
    size = x.shape[-1]
    quantised = (_grey(x) * 256).to(torch.int64)                          # floor: grey >= 0
    total = quantised.sum(dim=(1, 2, 3), keepdim=True)                   # [T, 1, 1, 1], exact
    mean = total.to(torch.float32) / float(size * size * 256)
    c = p[Col.CONTRAST]
    return (c * x + (1 - c) * mean).clamp(0, 255)


def _saturation(x, p):
    s = p[Col.SATURATION]
    return (s * x + (1 - s) * _grey(x)).clamp(0, 255)


def _hue(x, p):
    """Hue rotation in sixths of a turn (torchvision's adjust_hue up to rounding): hue h6 from the channel
    differences, rotated, wrapped into [0, 6), each channel rebuilt as max - chroma * clamp(min(k, 4-k), 0, 1)
    with k = (n + h6) mod 6 for n = 5 (red), 3 (green), 1 (blue). Grey pixels are unchanged."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc = torch.maximum(r, torch.maximum(g, b))
    minc = torch.minimum(r, torch.minimum(g, b))
    chroma = maxc - minc
    grey_pixel = chroma == 0
    safe_chroma = torch.where(grey_pixel, torch.ones_like(chroma), chroma)
    red_max, green_max = maxc == r, maxc == g
    num = torch.where(red_max, g - b, torch.where(green_max, b - r, r - g))
    offset = torch.where(red_max, _const(0.0, x), torch.where(green_max, _const(2.0, x), _const(4.0, x)))
    h6 = offset + num / safe_chroma
    h6 = h6 + p[Col.HUE] * 6
    h6 = torch.where(h6 < 0, h6 + 6, h6)
    h6 = torch.where(h6 >= 6, h6 - 6, h6)
    channels = [_hue_channel(n, h6, maxc, chroma) for n in (5.0, 3.0, 1.0)]
    return torch.where(grey_pixel.unsqueeze(1), x, torch.stack(channels, dim=1))


def _hue_channel(n, h6, maxc, chroma):
    """One rebuilt channel. It is >= 0 without a clamp (chroma = max - min rounded is <= max, and chroma * m
    rounded is <= chroma for m in [0, 1]), but may exceed 255: a bilinear sample can be 255 + 2^-16."""
    k = n + h6
    k = torch.where(k >= 6, k - 6, k)
    m = torch.minimum(k, 4 - k).clamp(0, 1)
    return (maxc - chroma * m).clamp(max=255)


def _const(value, like):
    return torch.tensor(value, dtype=torch.float32, device=like.device)


_JITTER = {JITTER_BRIGHTNESS: _brightness, JITTER_CONTRAST: _contrast,
           JITTER_SATURATION: _saturation, JITTER_HUE: _hue}


def _reflect_index(size, radius):
    """[S, 2R+1]: source index of tap k for output position x, reflect padding (no edge repeat)."""
    i = torch.arange(size)[:, None] + torch.arange(-radius, radius + 1)[None, :]
    i = torch.where(i < 0, -i, i)
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _blur_cols(x, taps, radius):
    """Horizontal pass: along the last (x) axis."""
    index = _reflect_index(x.shape[-1], radius).to(x.device)
    acc = taps[0] * x[..., index[:, 0]]
    for k in range(1, 2 * radius + 1):
        acc = acc + taps[k] * x[..., index[:, k]]
    return acc


def _blur_rows(x, taps, radius):
    """Vertical pass: along the y axis."""
    index = _reflect_index(x.shape[-2], radius).to(x.device)
    acc = taps[0] * x[..., index[:, 0], :]
    for k in range(1, 2 * radius + 1):
        acc = acc + taps[k] * x[..., index[:, k], :]
    return acc
