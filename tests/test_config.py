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


# --- the pre-training config: sections, shipped files, inheritance ----------------------------------------


def test_pretrain_config_overrides_and_errors_name_the_key():
    from uptal.config import load_pretrain_config
    config = load_pretrain_config(None, ["train.lr=3e-4", "pal.beta=[1, 1]", "model.backbone=tiny"])
    assert config.train.lr == 3e-4 and config.pal.beta == (1.0, 1.0) and config.model.backbone == "tiny"
    for override, key in [("train.lrr=1", "train.lrr: unknown key"), ("model.backbone=vgg", "model.backbone"),
                          ("data.workers=-1", "data.workers"), ("train.amp=fp8", "train.amp"),
                          ("data.worker_priority=high", "data.worker_priority"),
                          ("model.temporal_layers=4", "model.temporal_layers"), ("nope.x=1", "nope: unknown key")]:
        with pytest.raises(ConfigError, match=key):
            load_pretrain_config(None, [override])


def test_shipped_configs_resolve_by_name_and_inherit_their_base():
    from uptal.config import load_pretrain_config, resolve_config_path, shipped_configs
    names = shipped_configs()
    assert {"demo", "pal_paper", "moco_v2", "ablations/table5_beta_1"} <= set(names)
    assert resolve_config_path("demo").name == "demo.yaml"
    hard = load_pretrain_config("ablations/table5_beta_1")
    paper = load_pretrain_config("pal_paper")
    assert hard.pal.beta == (1.0, 1.0) and paper.pal.beta == (0.6, 1.0)
    assert hard.model == paper.model and hard.data == paper.data           # everything else from the base
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrain_config("no_such_config")


def test_base_cycles_are_an_error(tmp_path):
    from uptal.config import load_pretrain_config
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_pretrain_config(tmp_path / "a.yaml")


def test_kinetics_init_needs_its_input_range():
    from uptal.config import load_pretrain_config
    with pytest.raises(ConfigError, match=r"expects inputs in \[-1, 1\]"):
        load_pretrain_config("pal_paper", ["model.init=i3d-k400"])


def test_config_round_trips_through_yaml():
    import yaml

    from uptal.config import PretrainConfig, from_mapping, load_pretrain_config, to_dict
    config = load_pretrain_config("demo")
    assert from_mapping(PretrainConfig, yaml.safe_load(yaml.safe_dump(to_dict(config))), "") == config
