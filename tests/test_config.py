"""Typed configuration: unknown keys and invalid values name the key."""
from __future__ import annotations

import pytest

from uptal.config import ConfigError, PalConfig, apply_overrides, from_mapping, to_dict


def test_defaults_are_the_paper_settings():
    c = PalConfig()
    assert (c.clips, c.frames, c.size, c.max_region_clips, c.stride_range, c.beta) == (8, 8, 112, 6, (1, 4), (0.6, 1.0))


def test_mapping_round_trip_and_overrides():
    values = apply_overrides(to_dict(PalConfig()), ["beta=[1, 1]", "paste=same", "dense=false"])
    config = from_mapping(PalConfig, values, "pal")
    assert config.beta == (1.0, 1.0) and config.paste == "same" and config.dense is False


@pytest.mark.parametrize("values, key", [
    ({"clipz": 3}, "pal.clipz"),
    ({"clips": "many"}, "pal.clips"),
    ({"beta": [0.2]}, "pal.beta"),
    ({"beta": [0.9, 0.1]}, "pal.beta"),
    ({"paste": "sideways"}, "pal.paste"),
    ({"blur_kernel": 4}, "pal.blur_kernel"),
    ({"max_region_clips": 9}, "pal.max_region_clips"),
    ({"dense": "maybe"}, "pal.dense"),
    ({"size": 100000}, "pal.size"),
])
def test_bad_values_name_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_mapping(PalConfig, values, "pal")
