"""Every backbone: output shape, a forward/backward step, parameter counts, memory formats and bf16 autocast."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uptal.models import BACKBONES, build_backbone

# Parameters of each backbone without a classifier. The ResNets and S3D equal torchvision's r3d_18 (33371472),
# r2plus1d_18 (31505325) and s3d (8320048) minus their classifiers (512*400+400 and 1024*400+400), which checks
# the layouts; I3D is DeepMind's checkpoint minus its logits layer (test_weights.py checks that) plus 7280 frozen
# BatchNorm scales.
PARAMETERS = {"i3d": 12_287_264, "r2plus1d_18": 31_300_125, "r3d_18": 33_166_272, "s3d": 7_910_048, "tiny": 4_680}
FEATURE_DIMS = {"i3d": 1024, "r2plus1d_18": 512, "r3d_18": 512, "s3d": 1024, "tiny": 32}
SMALL_CLIPS = (2, 3, 8, 32, 32)  # [N, 3, F, S, S]: small enough for a shared 2-core CPU
GRADIENT_CLIPS = (2, 3, 4, 32, 32)  # float64 forward/backward
BF16_CLIPS = (2, 3, 4, 16, 16)  # bf16 convolutions are emulated (slow) on CPUs without native bf16


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_names():
    assert sorted(BACKBONES) == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_count(name):
    model = build_backbone(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]
    assert model.feature_dim == FEATURE_DIMS[name]


def test_i3d_batchnorm_has_no_learned_scale():
    model = build_backbone("i3d")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.endswith(".bn.weight") for n in frozen)
    assert sum(model.get_parameter(n).numel() for n in frozen) == 7280
    assert all(module.eps == 1e-3 for module in model.modules() if isinstance(module, torch.nn.BatchNorm3d))


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_forward_backward_step(name):
    """Train mode, float64: every trainable parameter gets a finite gradient, and the loss changes along the
    gradient as the gradient says (central difference; the Inception nets are sharply curved at init with two
    samples per BatchNorm, hence the tiny step, which float64 resolves)."""
    model = build_backbone(name).double().train()
    clips = torch.randn(*GRADIENT_CLIPS, dtype=torch.float64)
    features = model(clips)
    assert features.shape == (GRADIENT_CLIPS[0], FEATURE_DIMS[name])
    target = torch.randn_like(features)
    F.mse_loss(features, target).backward()

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing[:5]}"
    gradients = [p.grad for _, p in trainable]
    norm = torch.sqrt(sum((g * g).sum() for g in gradients))
    assert norm > 0

    def loss_at(step: float) -> float:  # the loss at parameters + step * unit gradient direction
        with torch.no_grad():
            torch._foreach_add_([p for _, p in trainable], gradients, alpha=step / norm.item())
            loss = F.mse_loss(model(clips), target).item()
            torch._foreach_add_([p for _, p in trainable], gradients, alpha=-step / norm.item())
        return loss

    step = 1e-9
    slope = (loss_at(step) - loss_at(-step)) / (2 * step)
    assert slope == pytest.approx(norm.item(), rel=1e-4)


def _relative_to_scale(expected: torch.Tensor) -> float:
    """Fresh BatchNorm statistics shrink activations layer by layer in eval mode: tolerances follow the scale."""
    scale = expected.abs().max().item()
    assert scale > 0
    return scale


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_channels_last_3d(name):
    model = build_backbone(name).eval()
    clips = torch.randn(*SMALL_CLIPS)
    with torch.no_grad():
        expected = model(clips)
        channels_last = model.to(memory_format=torch.channels_last_3d)(
            clips.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(channels_last, expected, rtol=1e-4, atol=1e-5 * _relative_to_scale(expected))


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_bf16_autocast(name):
    model = build_backbone(name).eval()
    clips = torch.randn(*BF16_CLIPS)
    with torch.no_grad():
        expected = model(clips)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(clips)
    assert low.dtype == torch.bfloat16
    _relative_to_scale(expected)
    relative_error = (low.float() - expected).norm() / expected.norm()
    assert relative_error < 0.05, f"bf16 autocast relative error {relative_error:.3g}"


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_odd_clip_sizes(name):
    model = build_backbone(name).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 5, 37, 45))
    assert features.shape == (1, FEATURE_DIMS[name])


@pytest.mark.parametrize("bad", [torch.zeros(2, 3, 8, 32), torch.zeros(2, 4, 8, 32, 32),
                                 torch.zeros(2, 3, 8, 32, 32, dtype=torch.uint8)])
def test_bad_clips_are_value_errors(bad):
    for name in PARAMETERS:
        with pytest.raises(ValueError, match="clips"):
            build_backbone(name)(bad)


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match="backbone name"):
        build_backbone("resnet50")
    with pytest.raises(ValueError, match="does not take"):
        build_backbone("r3d_18", num_classes=400)
    with pytest.raises(ValueError, match="num_classes"):
        build_backbone("i3d", num_classes=-1)
    with pytest.raises(ValueError, match="width"):
        build_backbone("tiny", width=0)
    with pytest.raises(ValueError, match="num_classes > 0"):
        build_backbone("i3d").forward_logits(torch.zeros(1, 3, 8, 32, 32))


def test_tiny_is_tiny_and_fast_at_the_pal_clip_size():
    model = build_backbone("tiny").eval()
    with torch.no_grad():
        features = model(torch.randn(16, 3, 8, 112, 112))  # [B*J, 3, F, S, S] of two PAL videos
    assert features.shape == (16, 32)
