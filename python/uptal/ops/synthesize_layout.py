"""The packed form of a PAL plan that the synthesis kernels read: one float32 row of parameters per
synthetic video. csrc/synth_params.h mirrors these column numbers; tests check that the two agree.
"""
from __future__ import annotations

# Colour-jitter operations, as stored in the ORDER columns.
JITTER_BRIGHTNESS, JITTER_CONTRAST, JITTER_SATURATION, JITTER_HUE = 0, 1, 2, 3


class Col:
    """Column of each parameter in `params` [M, P]."""

    BETA = 0            # paste weight of the action frames
    CROP_Y0 = 1         # crop box top, source pixels
    CROP_X0 = 2         # crop box left, source pixels
    SCALE_Y = 3         # crop height / S
    SCALE_X = 4         # crop width / S
    FLIP = 5            # 1: horizontal flip
    JITTER_ON = 6       # 1: apply colour jitter
    BRIGHTNESS = 7      # factor
    CONTRAST = 8        # factor
    SATURATION = 9      # factor
    HUE = 10            # shift in [-0.5, 0.5] of a turn
    ORDER0 = 11         # 11..14: jitter operations in the order applied
    GRAYSCALE = 15      # 1: convert to grey
    BLUR_ON = 16        # 1: Gaussian blur
    BLUR0 = 17          # 17..17+2R: blur taps


NUM_FIXED_COLUMNS = Col.BLUR0
COLUMN_NAMES = ["beta", "crop_y0", "crop_x0", "scale_y", "scale_x", "flip", "jitter_on", "brightness", "contrast",
                "saturation", "hue", "order0", "order1", "order2", "order3", "grayscale", "blur_on"]


def num_params(blur_kernel: int) -> int:
    return NUM_FIXED_COLUMNS + blur_kernel


def blur_radius(num_columns: int) -> int:
    """The blur radius R encoded by the width of `params` (P = 17 + 2R + 1)."""
    return (num_columns - NUM_FIXED_COLUMNS - 1) // 2
