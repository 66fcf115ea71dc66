"""uptal.data.synth_tal and `uptal data synth-tal`: the synthetic temporal action localization benchmark."""
from __future__ import annotations

import json
import math

import pytest
import torch
from uptal.cli import main
from uptal.data import decode_window, probe
from uptal.data.synth_tal import (
    CLASS_NAMES,
    MAX_INSTANCE_SEC,
    MIN_GAP_SEC,
    MIN_INSTANCE_SEC,
    annotations_dict,
    instance_mask,
    synth_tal_frames,
    synth_tal_specs,
)
from uptal.eval.activitynet import load_ground_truth

# small enough to render and encode in well under a second per video on a shared CPU
TINY = {"videos": 8, "classes": 4, "duration_range": (2.5, 4.0), "fps": 10, "height": 32, "width": 43}
# big enough for the motion of every class to be measured in pixels (rendered only, never encoded)
MEASURE = {"videos": 10, "classes": 5, "duration_range": (9.0, 12.0), "fps": 10, "height": 48, "width": 64}


def test_same_seed_same_annotations_and_pixels():
    a, b = synth_tal_specs(seed=3, **TINY), synth_tal_specs(seed=3, **TINY)
    assert a == b
    assert annotations_dict(a, 4) == annotations_dict(b, 4)
    assert torch.equal(synth_tal_frames(a[0]), synth_tal_frames(b[0]))
    other = synth_tal_specs(seed=4, **TINY)
    assert annotations_dict(a, 4) != annotations_dict(other, 4)
    assert not torch.equal(synth_tal_frames(a[0])[:10], synth_tal_frames(other[0])[:10])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segments_inside_the_video_the_right_length_and_apart(seed):
    specs = synth_tal_specs(videos=40, seed=seed)   # the defaults: 8 to 16 s at 10 fps
    gap = math.ceil(MIN_GAP_SEC * 10)
    for spec in specs:
        assert 80 <= spec.num_frames <= 160 and 1 <= len(spec.instances) <= 3
        ends = [0 - gap]
        for inst in spec.instances:       # in time order, each after the previous one plus the gap
            assert ends[-1] + gap <= inst.start < inst.end <= spec.num_frames
            assert MIN_INSTANCE_SEC * 10 <= inst.end - inst.start <= MAX_INSTANCE_SEC * 10
            ends.append(inst.end)
    counts = {len(spec.instances) for spec in specs}
    assert counts == {1, 2, 3}
    # the ground truth says the same in seconds
    database = annotations_dict(specs, 4)["database"]
    for spec in specs:
        entry = database[spec.video_id]
        assert entry["duration"] == pytest.approx(spec.num_frames / 10) and entry["fps"] == 10
        for (start, end), annotation in zip(((i.start / 10, i.end / 10) for i in spec.instances), entry["annotations"]):
            assert annotation["segment"] == pytest.approx([start, end])
            assert 0 <= annotation["segment"][0] < annotation["segment"][1] <= entry["duration"]


@pytest.mark.parametrize("classes", [1, 2, 4, 5])
@pytest.mark.parametrize("seed", [0, 5])
def test_every_class_in_both_splits(classes, seed):
    specs = synth_tal_specs(videos=2 * classes, classes=classes, seed=seed, duration_range=(3.0, 4.0))
    for subset in ("training", "validation"):
        labels = {inst.label for spec in specs if spec.subset == subset for inst in spec.instances}
        assert labels == set(range(classes)), subset


def test_split_follows_test_fraction():
    specs = synth_tal_specs(videos=40, test_fraction=0.25)
    assert sum(spec.subset == "validation" for spec in specs) == 10
    # a seeded choice of videos, not the last ten
    assert [spec.subset for spec in specs][-10:] != ["validation"] * 10


def test_instances_are_drawn_inside_their_segments_only():
    for spec in synth_tal_specs(seed=1, **TINY)[:4]:
        with_actions, background = synth_tal_frames(spec).int(), synth_tal_frames(spec, draw_instances=False).int()
        changed = (with_actions != background).any(-1)                       # [T, H, W]
        inside = torch.zeros(spec.num_frames, dtype=torch.bool)
        for inst in spec.instances:
            inside[inst.start:inst.end] = True
            mask = instance_mask(spec, inst)                                 # [T_inst, H, W]
            assert not (changed[inst.start:inst.end] & ~mask).any()      # nothing drawn outside the object
            # the object is drawn wherever it is shown (the background rarely matches a texture pixel)
            drawn = changed[inst.start:inst.end][mask].float().mean()
            assert drawn > 0.9
        assert not changed[~inside].any()                                    # nothing outside the segments


def _centroids(mask):
    """Per frame: (y, x) centroid, area, row span of a bool [T, H, W] mask (NaN where empty)."""
    area = mask.sum((1, 2)).float()                                          # [T]
    ys = torch.arange(mask.shape[1], dtype=torch.float32)
    xs = torch.arange(mask.shape[2], dtype=torch.float32)
    cy = (mask.sum(2).float() * ys).sum(1) / area
    cx = (mask.sum(1).float() * xs).sum(1) / area
    rows = mask.any(2)                                                       # [T, H]
    return cy, cx, area, rows.sum(1)


def _instances_of(label):
    specs = synth_tal_specs(seed=2, **MEASURE)
    found = [(spec, inst) for spec in specs for inst in spec.instances if inst.label == label]
    assert len(found) >= 3
    return found


def test_circle_orbits_clockwise():
    for spec, inst in _instances_of(CLASS_NAMES.index("circle_clockwise")):
        cy, cx, area, _ = _centroids(instance_mask(spec, inst))
        assert (area > 0).all() and cy.std() > 2 and cx.std() > 2
        # clockwise on screen (y down): successive displacements turn with a positive cross product
        dy, dx = cy.diff(), cx.diff()
        turn = dx[:-1] * dy[1:] - dy[:-1] * dx[1:]
        assert (turn > 0).float().mean() > 0.8


def test_bounce_moves_vertically_only():
    for spec, inst in _instances_of(CLASS_NAMES.index("bounce_vertical")):
        cy, cx, area, _ = _centroids(instance_mask(spec, inst))
        assert (area > 0).all() and cx.std() < 0.5
        assert cy.max() - cy.min() > 0.25 * spec.height


def test_blink_switches_on_and_off_in_place():
    for spec, inst in _instances_of(CLASS_NAMES.index("blink_square")):
        cy, cx, area, _ = _centroids(instance_mask(spec, inst))
        on = area > 0
        assert on[0] and on.float().mean() < 0.8 and on.float().mean() > 0.2
        assert int(on.int().diff().abs().sum()) >= 2                        # off then on again at least once
        assert cy[on].std() < 0.01 and cx[on].std() < 0.01


def test_sweep_bar_moves_horizontally_and_is_tall():
    for spec, inst in _instances_of(CLASS_NAMES.index("sweep_bar")):
        cy, cx, area, rows = _centroids(instance_mask(spec, inst))
        assert (area > 0).all() and cy.std() < 0.01
        assert cx.max() - cx.min() > 0.25 * spec.width and rows.min() > 0.4 * spec.height


def test_breathe_disc_grows_and_shrinks_in_place():
    for spec, inst in _instances_of(CLASS_NAMES.index("breathe_disc")):
        cy, cx, area, _ = _centroids(instance_mask(spec, inst))
        assert (area > 0).all() and cy.std() < 0.3 and cx.std() < 0.3
        assert area.max() > 2.5 * area.min()


def test_motion_energy_is_higher_inside_the_segments():
    """Frame-to-frame change where an instance is drawn is higher during it than in the rest of the video."""
    for label in range(5):
        for spec, inst in _instances_of(label):
            frames = synth_tal_frames(spec).float()                          # [T, H, W, 3]
            energy = (frames[1:] - frames[:-1]).abs().mean(-1)               # [T - 1, H, W]
            region = instance_mask(spec, inst).any(0)                        # [H, W]: pixels it ever covers
            per_step = energy[:, region].mean(1)                             # [T - 1]
            during = per_step[inst.start:inst.end - 1].mean()
            quiet = torch.ones(spec.num_frames - 1, dtype=torch.bool)
            for other in spec.instances:                                     # every instance, and the cut
                quiet[max(0, other.start - 1):other.end] = False
            quiet[spec.cut_frame - 1] = False
            # 1.6 to 3.1 times for these instances; 1.3 leaves room and still fails a static or missing pattern
            assert during > 1.3 * per_step[quiet].mean(), (CLASS_NAMES[label], spec.video_id)


def test_class_is_the_motion_not_the_colour():
    specs = synth_tal_specs(seed=0, **MEASURE)
    colours = {}
    for spec in specs:
        for inst in spec.instances:
            colours.setdefault(inst.label, set()).add(inst.color)
    assert all(len(c) >= 3 for c in colours.values())     # every class comes in many colours


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_tal")
    code = main(["data", "synth-tal", "--out", str(out), "--videos", "8", "--classes", "4", "--seed", "1",
                 "--duration-range", "2.5", "4", "--fps", "10", "--height", "32", "--width", "43"])
    assert code == 0
    return out


def test_cli_writes_what_it_says(tiny_set, capsys):
    gt = json.loads((tiny_set / "annotations.json").read_text())
    assert gt["version"] == "synth-tal-1"
    assert [node["nodeName"] for node in gt["taxonomy"]] == list(CLASS_NAMES[:4])
    assert (tiny_set / "classes.txt").read_text().split() == list(CLASS_NAMES[:4])
    assert sorted(p.stem for p in (tiny_set / "videos").glob("*.mp4")) == sorted(gt["database"])
    assert not list(tiny_set.rglob("*partial*")) and not list(tiny_set.rglob(".*.tmp"))
    # the same as the library writes with the same arguments
    assert gt == annotations_dict(synth_tal_specs(seed=1, **TINY), 4)
    assert {entry["subset"] for entry in gt["database"].values()} == {"training", "validation"}


def test_decoded_videos_match_duration_and_pixels(tiny_set):
    specs = {spec.video_id: spec for spec in synth_tal_specs(seed=1, **TINY)}
    for video_id in sorted(specs)[:3]:
        spec, path = specs[video_id], tiny_set / "videos" / f"{video_id}.mp4"
        info = probe(path)
        assert info.num_frames == spec.num_frames
        assert abs(info.duration - spec.duration) <= 1 / spec.fps        # within a frame of the annotated length
        decoded = decode_window(path, 0.0, spec.num_frames, spec.fps, spec.height, spec.width).frames
        assert decoded.shape == (spec.num_frames, 32, 43, 3)
        mse = float(((decoded.float() - synth_tal_frames(spec).float()) ** 2).mean())
        assert 10 * math.log10(255 ** 2 / mse) > 28                         # the pixels rendered, encoded


def test_ground_truth_loads_with_the_evaluator(tiny_set):
    gt = json.loads((tiny_set / "annotations.json").read_text())
    for subset in ("training", "validation"):
        loaded = load_ground_truth(tiny_set / "annotations.json", subset=subset)
        entries = {vid: e for vid, e in gt["database"].items() if e["subset"] == subset}
        assert set(loaded.video_ids) == set(entries)
        assert loaded.num_instances == sum(len(e["annotations"]) for e in entries.values())
        assert set(loaded.classes) == set(CLASS_NAMES[:4])   # every class in both splits (8 = 2 * 4 videos)


def _evaluate(gt_path, results, tmp_path, capsys) -> dict:
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"version": "synth-tal-1", "results": results, "external_data": {}}))
    capsys.readouterr()
    assert main(["evaluate", "detection", "--gt", str(gt_path), "--pred", str(pred), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ground_truth_as_predictions_scores_map_one(tiny_set, tmp_path, capsys):
    gt_path = tiny_set / "annotations.json"
    database = json.loads(gt_path.read_text())["database"]
    validation = {vid: e for vid, e in database.items() if e["subset"] == "validation"}
    perfect = {vid: [dict(a, score=1.0) for a in e["annotations"]] for vid, e in validation.items()}
    result = _evaluate(gt_path, perfect, tmp_path, capsys)
    assert result["average"] == pytest.approx(1.0) and all(v == pytest.approx(1.0) for v in result["values"])
    # and the check can fail: the right segments with the next class's label score nothing
    shifted = {vid: [dict(a, score=1.0, label=CLASS_NAMES[(CLASS_NAMES.index(a["label"]) + 1) % 4])
                     for a in e["annotations"]] for vid, e in validation.items()}
    assert _evaluate(gt_path, shifted, tmp_path, capsys)["average"] == pytest.approx(0.0)


@pytest.mark.parametrize("argument, value", [
    ("videos", 1), ("classes", 0), ("classes", len(CLASS_NAMES) + 1), ("duration_range", (1.0, 5.0)),
    ("duration_range", (6.0, 5.0)), ("duration_range", (5.0,)), ("fps", 2.0), ("fps", float("nan")),
    ("height", 8), ("width", 4), ("test_fraction", 0.0), ("test_fraction", 1.0),
])
def test_bad_arguments_raise_value_error_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        synth_tal_specs(**dict(TINY, **{argument: value}))


def test_cli_bad_argument_is_a_one_line_error(tmp_path, capsys):
    code = main(["data", "synth-tal", "--out", str(tmp_path / "x"), "--classes", "9"])
    err = capsys.readouterr().err
    assert code == 2 and "classes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()

