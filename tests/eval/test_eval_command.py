"""The `evaluate` subcommand through an argparse parser built here, as uptal's CLI builds it."""
from __future__ import annotations

import argparse
import json

import pytest

from uptal.eval.command import add_subcommand

GT = {"version": "VERSION 1.3", "taxonomy": [], "database": {
    "v1": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "a"}, {"segment": [20, 30], "label": "a"}]},
    "v2": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "a"}]},
    "v3": {"subset": "testing", "annotations": [{"segment": [0, 10], "label": "b"}]},
}}
PRED = {"version": "VERSION 1.3", "external_data": {}, "results": {
    "v1": [{"segment": [0, 10], "label": "a", "score": 0.9}, {"segment": [20, 28], "label": "a", "score": 0.7},
           {"segment": [0, 10], "label": "a", "score": 0.6}],
    "v2": [{"segment": [0, 5], "label": "a", "score": 0.8}],
}}


def run_cli(argv, capsys):
    """Parse `argv` with a parser holding the evaluate subcommand, run it: (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="uptal")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(write_json):
    return str(write_json("gt.json", GT)), str(write_json("pred.json", PRED))


def test_detection_json(files, capsys):
    code, out, err = run_cli(["evaluate", "detection", "--gt", files[0], "--pred", files[1],
                              "--tiou", "0.5,0.75,0.9", "--json"], capsys)
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["metric"] == "detection" and result["tiou"] == [0.5, 0.75, 0.9]
    assert result["values"] == pytest.approx([1.0, 5 / 9, 1 / 3], abs=1e-12)  # see test_eval_detection
    assert result["average"] == pytest.approx(17 / 27, abs=1e-12)


def test_detection_table(files, capsys):
    code, out, _ = run_cli(["evaluate", "detection", "--gt", files[0], "--pred", files[1], "--tiou", "thumos14"],
                           capsys)
    assert code == 0
    lines = out.splitlines()
    assert "2 videos, 3 instances, 1 classes" in lines[0]
    assert lines[2].split() == ["tIoU", "mAP", "(%)"]
    assert [line.split()[0] for line in lines[3:9]] == ["0.3", "0.4", "0.5", "0.6", "0.7", "average"]
    assert lines[3].split()[1] == "100.00"


def test_proposals_json_and_subset_all(files, capsys):
    code, out, _ = run_cli(["evaluate", "proposals", "--gt", files[0], "--pred", files[1], "--subset", "all",
                            "--max-avg-proposals", "10", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["metric"] == "proposals" and len(result["values"]) == 10
    assert {"AR@1", "AR@5", "AR@10", "AUC"} <= set(result) and "AR@100" not in result
    assert result["average"] == pytest.approx(sum(result["values"]) / 10)
    assert 0 <= result["AUC"] <= 100


def test_unknown_video_warning_goes_to_stderr(write_json, files, capsys):
    pred = dict(PRED, results=dict(PRED["results"], v9=[{"segment": [0, 1], "label": "a", "score": 0.1}]))
    code, out, err = run_cli(["evaluate", "detection", "--gt", files[0], "--pred", str(write_json("p.json", pred)),
                              "--json"], capsys)
    assert code == 0 and json.loads(out)["metric"] == "detection"
    assert "warning:" in err and "1 predictions on 1 videos" in err
    code, out, err = run_cli(["evaluate", "detection", "--gt", files[0], "--pred", str(write_json("p.json", pred)),
                              "--json", "--drop-unknown-videos"], capsys)
    assert code == 0 and "ignored 1 predictions" in err


def test_blocked_list(write_json, files, capsys):
    blocked = str(write_json("blocked.txt", "v2\n"))
    code, out, _ = run_cli(["evaluate", "detection", "--gt", files[0], "--pred", files[1], "--blocked", blocked,
                            "--tiou", "0.5", "--json"], capsys)
    assert code == 0
    # without v2: v1's [0,10] TP, [20,28] TP, duplicate FP -> AP 1
    assert json.loads(out)["values"] == [1.0]


def test_grounding_json(write_json, capsys):
    gt = write_json("cap.json", {"v1": {"duration": 30, "timestamps": [[0, 10], [5, 15]], "sentences": ["x", "y"]}})
    pred = write_json("ground.json", {"v1": [[0, 10], [10, 20]]})
    code, out, _ = run_cli(["evaluate", "grounding", "--gt", str(gt), "--pred", str(pred), "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["tiou"] == [0.3, 0.5, 0.7] and result["values"] == pytest.approx([1.0, 0.5, 0.5])
    assert result["mIoU"] == pytest.approx((1 + 1 / 3) / 2)
    assert result["average"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("metric", ["detection", "proposals"])
def test_malformed_file_exits_2_with_a_message(write_json, files, capsys, metric):
    bad = dict(PRED, results={"v1": [{"segment": [0, 10], "label": "a", "score": float("nan")}]})
    code, out, err = run_cli(["evaluate", metric, "--gt", files[0], "--pred", str(write_json("bad.json", bad)),
                              "--json"], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"uptal evaluate {metric}: error: ")
    assert "bad.json: video 'v1', prediction 0: field 'score' is NaN" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv_tail, message", [
    (["--pred", "missing.json"], "missing.json: No such file or directory"),
    (["--pred", "GT"], "missing field 'results'"),
    (["--pred", "PRED", "--tiou", "0.5:0.1:0.1"], "start <= stop"),
    (["--pred", "PRED", "--subset", "test"], "no video of subset 'test'"),
    (["--pred", "PRED", "--blocked", "nowhere.txt"], "nowhere.txt: No such file or directory"),
])
def test_bad_input_exits_2(files, capsys, argv_tail, message):
    argv_tail = [{"GT": files[0], "PRED": files[1]}.get(a, a) for a in argv_tail]
    code, out, err = run_cli(["evaluate", "detection", "--gt", files[0]] + argv_tail, capsys)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_not_json_exits_2(write_json, files, capsys):
    code, _, err = run_cli(["evaluate", "detection", "--gt", str(write_json("g.txt", "hello")), "--pred", files[1]],
                           capsys)
    assert code == 2 and "g.txt: not valid JSON" in err


def test_grounding_help_documents_the_format(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["evaluate", "grounding", "--help"], capsys)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert '"timestamps": [[start, end], ...]' in out and "one predicted segment per query" in out


def test_missing_metric_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["evaluate"], capsys)
    assert exit_info.value.code == 2


def test_mini_case_through_the_cli(shared_data, capsys):
    gt, pred = str(shared_data / "eval" / "mini_gt.json"), str(shared_data / "eval" / "mini_pred.json")
    code, out, _ = run_cli(["evaluate", "detection", "--gt", gt, "--pred", pred, "--json"], capsys)
    assert code == 0 and json.loads(out)["average"] == pytest.approx(0.6177579365079365, abs=1e-12)
    code, out, _ = run_cli(["evaluate", "proposals", "--gt", gt, "--pred", pred, "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["AUC"] == pytest.approx(72.525, abs=1e-6)
    assert [result["AR@1"], result["AR@5"], result["AR@10"]] == pytest.approx([0.0, 0.6, 0.75], abs=1e-6)
