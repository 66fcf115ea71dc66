"""`uptal info --model NAME`: parameters and FLOPs per clip, counted by torch.utils.flop_counter."""
from __future__ import annotations

import json

import pytest

from uptal.cli import main as uptal_main
from uptal.info import flops_per_multiply_add, model_cost


def test_flop_counter_counts_a_multiply_add_as_two_flops():
    assert flops_per_multiply_add() == 2


def test_tiny_cost_is_what_its_convolutions_do():
    cost = model_cost("tiny", frames=8, size=112)
    # multiply-adds = output elements x (input channels x kernel volume), per convolution:
    stem = 8 * 8 * 56 * 56 * (3 * 1 * 5 * 5)          # [8 ch, 8, 56, 56]
    spatiotemporal = 16 * 4 * 28 * 28 * (8 * 3 * 3 * 3)  # [16 ch, 4, 28, 28]
    pointwise = 32 * 4 * 28 * 28 * 16                   # [32 ch, 4, 28, 28]
    assert cost["gmacs"] * 1e9 == pytest.approx(stem + spatiotemporal + pointwise, abs=0.5)
    assert cost["gflops"] == pytest.approx(2 * cost["gmacs"])
    assert cost["parameters"] == cost["trainable_parameters"] == 4680
    assert cost["input"] == [1, 3, 8, 112, 112]


def test_i3d_cost_at_the_paper_clip_size():
    cost = model_cost("i3d")
    assert cost["parameters"] == 12_287_264 and cost["trainable_parameters"] == 12_279_984
    # the paper says 3.6 "GFLOPs" (multiply-adds) per 8x112x112 clip; we count 3.49 G multiply-adds
    assert cost["gmacs"] == pytest.approx(3.4913, abs=1e-4)


def test_info_command_with_a_model(capsys):
    assert uptal_main(["info", "--model", "tiny", "--frames", "4", "--size", "64", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)["model"]
    assert cost["model"] == "tiny" and cost["input"] == [1, 3, 4, 64, 64] and cost["feature_dim"] == 32
    assert uptal_main(["info", "--model", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "model tiny: 4,680 parameters" in text and "G multiply-adds" in text
    assert uptal_main(["info", "--model", "resnet50"]) == 2
    assert "backbone name" in capsys.readouterr().err
