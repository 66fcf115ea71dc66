"""Shared fixtures for uptal.eval tests: the shared real-data folder and small ActivityNet JSON builders."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from uptal.eval.activitynet import ground_truth_from_dict, predictions_from_dict

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real test material at <repo root>/../shared/data; skip when it is absent."""
    if not (SHARED_DATA / "eval" / "mini_gt.json").is_file():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (a fresh clone does not have it)")
    return SHARED_DATA


def gt_dict(rows, videos=(), subset="validation") -> dict:
    """ActivityNet ground truth from (video, start, end, label) rows; `videos` adds unannotated videos."""
    database = {video: {"subset": subset, "annotations": []} for video in videos}
    for video, start, end, label in rows:
        entry = database.setdefault(video, {"subset": subset, "annotations": []})
        entry["annotations"].append({"segment": [start, end], "label": label})
    return {"version": "VERSION 1.3", "taxonomy": [], "database": database}


def pred_dict(rows) -> dict:
    """ActivityNet predictions from (video, start, end, label, score) rows, in row order within a video."""
    results: dict[str, list] = {}
    for video, start, end, label, score in rows:
        results.setdefault(video, []).append({"segment": [start, end], "label": label, "score": score})
    return {"version": "VERSION 1.3", "external_data": {}, "results": results}


def build(gt_rows, pred_rows, with_labels=True, videos=()):
    """(GroundTruth, Predictions) from rows, as the loaders would read them from files."""
    gt = ground_truth_from_dict(gt_dict(gt_rows, videos), source="gt.json")
    return gt, predictions_from_dict(pred_dict(pred_rows), gt, with_labels=with_labels, source="pred.json")


@pytest.fixture(scope="session")
def anet() -> SimpleNamespace:
    """Builders for small in-memory ActivityNet cases (session scope, so hypothesis tests may use it)."""
    return SimpleNamespace(gt_dict=gt_dict, pred_dict=pred_dict, build=build)


@pytest.fixture
def write_json(tmp_path):
    """Write an object (or raw text) to a file in tmp_path and return its path."""
    def write(name: str, content) -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path
    return write
