"""uptal::region_infonce: the reference against an independent formulation and gradcheck, the op's closed-form
backward against autograd, validation, torch.library integration, and the Triton kernels against the reference.

How the kernels run without a GPU: Triton decides between compiled and interpreted kernels when @triton.jit
runs, i.e. when uptal.kernels.region_infonce is first imported, and anything earlier in the test session (an
inductor compile, another test) may import it first. So the interpreter cases run in a fresh subprocess that
has TRITON_INTERPRET=1 in its environment from the start: this file, run as a script (see the bottom), computes
the op's outputs and gradients for inputs saved by the `interpreted` fixture; the assertions run here.

Low-precision rule (DESIGN.md): the kernel's error against the float64 reference is at most twice the
reference's own error when fed the same dtype. Errors are Frobenius norms over a whole output, and the
reference's error is never counted below the rounding of the exact result to the output dtype. The rule is
applied to the loss of every row (an op output, the residual of backward) rather than to the scalar loss, their
mean: the error of one fp32 scalar is luck at the ulp level (the reference's own ranges from 0.3 to 11 ulps
over seeds), and the scalar is then checked to be exactly that mean.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from uptal.ops import RegionInfoNCEStats, region_infonce, region_infonce_ref
from uptal.ops.region_infonce import implementation_for
from uptal.ops.region_infonce_ref import region_infonce_forward_ref

TAU = 0.07
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]


def make_inputs(batch, num_clips, dim, num_keys, seed=0, dtype=torch.float64):
    """Clip features around a shared direction (so positives and negatives overlap), random regions,
    a queue of unit keys."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(dim, generator=g, dtype=torch.float64)
    clip_q = direction + torch.randn(batch, num_clips, dim, generator=g, dtype=torch.float64)
    clip_k = clip_q + 0.5 * torch.randn(batch, num_clips, dim, generator=g, dtype=torch.float64)
    queue = F.normalize(direction + 2 * torch.randn(num_keys, dim, generator=g, dtype=torch.float64), dim=1)

    def regions():
        first = torch.randint(0, num_clips, (batch,), generator=g)
        last = first + (torch.rand(batch, generator=g, dtype=torch.float64) * (num_clips - first)).long()
        return torch.stack([first, last], dim=1)

    return {"clip_q": clip_q.to(dtype), "clip_k": clip_k.to(dtype), "regions_q": regions(), "regions_k": regions(),
            "queue": queue.to(dtype)}


IMPLEMENTATIONS = {  # name: (the loss, the forward with its residuals)
    "op": (region_infonce, torch.ops.uptal.region_infonce),
    "reference": (region_infonce_ref, region_infonce_forward_ref),
}


def run_op(inputs, dtype, implementation="op"):
    """Loss, stats [3], keys, row losses [B] and d loss / d clip_q on `inputs` cast to `dtype`."""
    loss_function, forward = IMPLEMENTATIONS[implementation]
    clip_q = inputs["clip_q"].detach().to(dtype).clone().requires_grad_()  # a fresh leaf, whatever `dtype` is
    others = (inputs["clip_k"].to(dtype), inputs["regions_q"], inputs["regions_k"], inputs["queue"].to(dtype))
    loss, stats, keys = loss_function(clip_q, *others, TAU)
    loss.backward()
    with torch.no_grad():
        row_losses = forward(clip_q, *others, TAU)[5]
    return {"loss": loss.detach(), "stats": torch.stack(list(stats)), "keys": keys, "row_losses": row_losses,
            "grad": clip_q.grad}


def error(actual, exact):
    return float((actual.double() - exact.double()).norm())


def assert_within_twice_reference_error(actual, reference, exact, name, output_dtype):
    representation = torch.finfo(output_dtype).eps / 2 * float(exact.double().norm())
    allowed = 2 * max(error(reference, exact), representation)
    assert error(actual, exact) <= allowed, \
        f"{name}: error {error(actual, exact):.3e} > 2 x reference error ({allowed / 2:.3e})"


# --- the reference: an independent formulation, autograd, stats ------------------------------------------


def naive_region_infonce(clip_q, clip_k, regions_q, regions_k, queue, tau):
    """Row by row, with slicing and F.cross_entropy."""
    losses = []
    for b in range(clip_q.shape[0]):
        q = F.normalize(clip_q[b, regions_q[b, 0]:regions_q[b, 1] + 1].mean(dim=0), dim=0)
        k = F.normalize(clip_k[b, regions_k[b, 0]:regions_k[b, 1] + 1].mean(dim=0), dim=0)
        logits = torch.cat([(q @ k)[None], queue @ q]) / tau
        losses.append(F.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long)))
    return torch.stack(losses).mean()


def test_reference_matches_a_row_by_row_formulation():
    inputs = make_inputs(4, 6, 10, 9)
    loss, stats, keys = region_infonce_ref(**inputs, tau=TAU)
    torch.testing.assert_close(loss, naive_region_infonce(**inputs, tau=TAU), rtol=1e-12, atol=0)
    assert keys.shape == (4, 10) and torch.allclose(keys.norm(dim=1), torch.ones(4, dtype=torch.float64))
    assert loss.dtype == torch.float64 and stats.shape == (3,)


def test_reference_computes_in_float32_for_low_precision_inputs():
    inputs = make_inputs(3, 4, 8, 5, dtype=torch.bfloat16)
    loss, stats, keys = region_infonce_ref(**inputs, tau=TAU)
    assert loss.dtype == stats.dtype == keys.dtype == torch.float32


def test_reference_gradcheck_float64():
    inputs = make_inputs(3, 4, 6, 7)
    clip_q = inputs.pop("clip_q").requires_grad_()
    assert torch.autograd.gradcheck(lambda x: region_infonce_ref(x, **inputs, tau=TAU)[0], (clip_q,))


def test_stats_of_a_perfect_and_a_hopeless_match():
    inputs = make_inputs(3, 4, 8, 5)
    perfect = {**inputs, "clip_k": inputs["clip_q"], "regions_k": inputs["regions_q"]}
    _, stats, keys = region_infonce_ref(**perfect, tau=TAU)
    assert stats[0].item() == pytest.approx(1.0) and stats[2].item() == 1.0
    # every query meets itself (similarity 1) among the negatives, which no noisy key region can beat
    queries = region_infonce_forward_ref(**inputs, tau=TAU)[3]
    hopeless = {**inputs, "queue": torch.cat([queries, inputs["queue"]])}
    _, stats, _ = region_infonce_ref(**hopeless, tau=TAU)
    assert stats[0].item() < 0.999 and stats[2].item() == 0.0
    assert stats[1].item() == pytest.approx(float((queries @ hopeless["queue"].T).mean()))


# --- the registered op (the reference path on the CPU) -----------------------------------------------------


def test_cpu_runs_the_reference_unless_the_interpreter_is_requested():
    expected = "triton-interpreter" if os.environ.get("TRITON_INTERPRET", "") not in ("", "0") else "reference"
    assert implementation_for("cpu")[0] == expected


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_op_closed_form_backward_matches_autograd_of_the_reference(dtype):
    inputs = make_inputs(5, 7, 12, 11, seed=1, dtype=dtype)
    expected = run_op(inputs, dtype, "reference")
    actual = run_op(inputs, dtype)
    tolerance = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-7)
    for name in ("loss", "stats", "keys", "row_losses", "grad"):
        torch.testing.assert_close(actual[name], expected[name], **tolerance, msg=name)


def test_gradient_flows_into_clip_q_only_and_only_inside_the_region():
    inputs = make_inputs(3, 6, 8, 5)
    clip_q = inputs.pop("clip_q").requires_grad_()
    clip_k = inputs.pop("clip_k").requires_grad_()
    inputs["regions_q"] = torch.tensor([[0, 0], [1, 4], [5, 5]])
    loss, stats, keys = region_infonce(clip_q, clip_k, **inputs, tau=TAU)
    loss.backward()
    assert clip_k.grad is None and not keys.requires_grad and not stats.accuracy.requires_grad
    touched = clip_q.grad.abs().sum(dim=2) > 0  # [B, J]
    expected = torch.tensor([[1, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(touched, expected)
    inside = clip_q.grad[1, 1:5]  # a mean gives every clip of the region the same gradient
    assert torch.allclose(inside, inside[:1].expand_as(inside))


def test_stats_are_a_named_tuple_of_scalars():
    _, stats, _ = region_infonce(**make_inputs(3, 4, 8, 5, dtype=torch.float32), tau=TAU)
    assert isinstance(stats, RegionInfoNCEStats)
    assert all(value.shape == () for value in stats)
    assert 0.0 <= stats.accuracy.item() <= 1.0 and -1.0 <= stats.negative_similarity.item() <= 1.0


def test_enqueueing_before_backward_is_an_error():
    inputs = make_inputs(3, 4, 8, 5, dtype=torch.float32)
    clip_q = inputs.pop("clip_q").requires_grad_()
    loss, _, keys = region_infonce(clip_q, **inputs, tau=TAU)
    inputs["queue"][:3] = keys
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_opcheck():
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        inputs = make_inputs(3, 5, 8, 6, dtype=dtype)
        inputs["clip_q"].requires_grad_()
        torch.library.opcheck(torch.ops.uptal.region_infonce.default, (*inputs.values(), TAU))
    residuals = torch.ops.uptal.region_infonce(*make_inputs(3, 5, 8, 6, dtype=torch.float32).values(), TAU)[2:]
    keys, queries, norms, row_losses = residuals
    torch.library.opcheck(torch.ops.uptal.region_infonce_backward.default,
                          (torch.tensor(1.0), inputs["regions_q"], queries, norms, keys,
                           inputs["queue"].float(), row_losses, TAU, 5, torch.bfloat16))


def test_torch_compile_of_a_step_calling_the_op():
    inputs = make_inputs(4, 5, 8, 6, dtype=torch.float32)

    def step(clip_q, clip_k, regions_q, regions_k, queue):
        loss, stats, keys = region_infonce(clip_q * 2.0, clip_k, regions_q, regions_k, queue, TAU)
        return loss + 0.0 * stats.accuracy, keys

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    results = []
    for function in (step, compiled):
        clip_q = inputs["clip_q"].clone().requires_grad_()
        loss, keys = function(clip_q, inputs["clip_k"], inputs["regions_q"], inputs["regions_k"], inputs["queue"])
        loss.backward()
        results.append((loss.detach(), keys, clip_q.grad))
    for expected, actual in zip(*results):
        torch.testing.assert_close(actual, expected)


# --- validation --------------------------------------------------------------------------------------------


def bad(**changes):
    inputs = make_inputs(3, 4, 8, 5, dtype=torch.float32)
    inputs["tau"] = TAU
    inputs.update(changes)
    return inputs


BAD_INPUTS = {
    "clip_q not a tensor": (dict(clip_q=[1.0]), "clip_q"),
    "clip_q 2-d": (dict(clip_q=torch.zeros(3, 8)), "clip_q"),
    "clip_q integer": (dict(clip_q=torch.zeros(3, 4, 8, dtype=torch.int32)), "clip_q"),
    "clip_k other shape": (dict(clip_k=torch.zeros(3, 5, 8)), "clip_k"),
    "clip_k other dtype": (dict(clip_k=torch.zeros(3, 4, 8, dtype=torch.bfloat16)), "clip_k"),
    "queue other dim": (dict(queue=torch.zeros(5, 7)), "queue"),
    "queue empty": (dict(queue=torch.zeros(0, 8)), "queue"),
    "queue integer": (dict(queue=torch.zeros(5, 8, dtype=torch.int64)), "queue"),
    "regions float": (dict(regions_q=torch.zeros(3, 2)), "regions_q"),
    "regions wrong batch": (dict(regions_k=torch.zeros(2, 2, dtype=torch.long)), "regions_k"),
    "region start negative": (dict(regions_q=torch.tensor([[0, 1], [-1, 2], [0, 0]])), "regions_q"),
    "region end past J - 1": (dict(regions_k=torch.tensor([[0, 1], [1, 4], [0, 0]])), "regions_k"),
    "region start after end": (dict(regions_q=torch.tensor([[0, 1], [3, 2], [0, 0]])), "regions_q"),
    "tau zero": (dict(tau=0.0), "tau"),
    "tau nan": (dict(tau=float("nan")), "tau"),
    "tau a tensor": (dict(tau=torch.tensor(0.07)), "tau"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_arguments_are_value_errors_naming_them(case):
    changes, name = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=f"^{name}:"):
        region_infonce(**bad(**changes))


def test_region_error_names_the_offending_region():
    with pytest.raises(ValueError, match=r"region \[1\] = \[3, 2\]:"):
        region_infonce(**bad(regions_q=torch.tensor([[0, 1], [3, 2], [0, 0]])))


# --- the Triton kernels in the interpreter (subprocess) ---------------------------------------------------

INTERPRETER_CASES = {
    # name: (B, J, D, K, deterministic). Interpreter tiles: 16 rows x 16 keys, up to 4 programs.
    "odd sizes, 3 splits of one tile": (3, 5, 24, 37, False),
    "2 row blocks, splits of several tiles": (20, 8, 40, 70, False),
    "deterministic: one split": (3, 5, 24, 37, True),
}


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    triton = pytest.importorskip("triton")
    if tuple(int(part) for part in triton.__version__.split(".")[:2]) < (3, 7):
        # 3.6's interpreter hands scalars to kernels as 1-element arrays: range() over a run-time bound raises
        # TypeError (seen with torch 2.11's triton 3.6.0; 3.7.0 and 3.9.0 pass). Compiled kernels are unaffected.
        pytest.skip(f"Triton's interpreter before 3.7 cannot loop over run-time bounds (triton {triton.__version__})")
    folder = tmp_path_factory.mktemp("interpreter")
    cases = {name: make_inputs(*shape[:4], seed=index) for index, (name, shape) in
             enumerate(INTERPRETER_CASES.items())}
    torch.save(cases, folder / "cases.pt")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    subprocess.run([sys.executable, __file__, str(folder)], env=env, check=True, timeout=600)
    results = torch.load(folder / "results.pt")
    implementation, why = results["implementation"]
    if implementation != "triton-interpreter":  # else the comparisons below would test the reference against itself
        pytest.skip(f"the Triton kernels cannot run in the interpreter here: {why}")
    return cases, results


@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("case", INTERPRETER_CASES)
def test_kernels_match_the_reference(interpreted, case, dtype):
    cases, results = interpreted
    inputs = cases[case]
    kernel = results[case][dtype]
    exact = run_op(inputs, torch.float64, "reference")
    reference = run_op(inputs, dtype, "reference")
    for name in ("row_losses", "stats", "keys"):
        assert_within_twice_reference_error(kernel[name], reference[name], exact[name], name, torch.float32)
    assert_within_twice_reference_error(kernel["grad"], reference["grad"], exact["grad"], "grad", dtype)
    torch.testing.assert_close(kernel["loss"], kernel["row_losses"].mean(), rtol=0, atol=0)
    assert kernel["grad"].dtype == dtype
    assert kernel["stats"][2] == reference["stats"][2]  # accuracy counts whole regions


def test_interpreted_kernels_pass_opcheck(interpreted):
    _, results = interpreted
    assert results["opcheck"] == "ok", results["opcheck"]


# --- the Triton kernels compiled for a Hopper GPU, without one ----------------------------------------------

H100_SHARED_MEMORY = 227 * 1024  # bytes a block may use on sm_90


def compile_for_sm90(kernel, argument_types, constants, num_warps, num_stages):
    """(registers, spilled bytes, shared memory bytes) of `kernel` compiled to a cubin for sm_90."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not cuobjdump.is_file():
        pytest.skip("this triton has no bundled NVIDIA toolchain")
    names = kernel.arg_names
    source = ASTSource(fn=kernel, signature={n: argument_types.get(n, "constexpr") for n in names},
                       constexprs={(names.index(n),): v for n, v in constants.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages, "enable_fp_fusion": True})
    cubin = Path(tempfile.mkdtemp()) / "kernel.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    usage = subprocess.run([str(cuobjdump), "-res-usage", str(cubin)], capture_output=True, text=True,
                           check=True).stdout
    registers, spilled = (int(re.search(rf"{field}:(\d+)", usage).group(1)) for field in ("REG", "STACK"))
    return registers, spilled, compiled.metadata.shared


@pytest.mark.slow
@pytest.mark.parametrize("clip_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_queue_kernels_compile_for_sm90_at_the_papers_sizes(clip_dtype, monkeypatch):
    """The tiles choose_tiling picks for B=512, K=16384, D=128 on an H100 fit its shared memory and spill no
    registers."""
    if os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        pytest.skip("the kernels were imported interpreted")
    kernels = pytest.importorskip("uptal.kernels.region_infonce")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(multi_processor_count=132))
    element = {torch.float32: "*fp32", torch.bfloat16: "*bf16"}[clip_dtype]
    common = dict(queries="*fp32", queue=element, B="i32", K="i32", D="i32", scale="fp32", tiles_per_split="i32")
    passes = {False: (kernels._queue_lse_partial_kernel, dict(positives="*fp32", partials="*fp32")),
              True: (kernels._queue_grad_kernel, dict(keys="*fp32", row_losses="*fp32", weighted_keys="*fp32"))}
    for backward, (kernel, pointers) in passes.items():
        tiling = kernels.choose_tiling(512, 16384, 128, "cuda", clip_dtype, backward=backward)
        constants = dict(BLOCK_B=tiling.block_b, BLOCK_K=tiling.block_k, BLOCK_D=tiling.block_d,
                         PRECISION=tiling.precision)
        registers, spilled, shared = compile_for_sm90(kernel, {**common, **pointers}, constants, tiling.num_warps,
                                                      tiling.num_stages)
        assert shared <= H100_SHARED_MEMORY, f"{kernel.__name__}: {shared} bytes of shared memory"
        assert spilled == 0, f"{kernel.__name__}: {registers} registers, {spilled} bytes spilled"


# --- the Triton kernels on a GPU at the paper's sizes ------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(512, 8, 128, 16384), (3, 5, 24, 37), (70, 8, 100, 1000)], ids=str)
def test_cuda_kernels_match_the_reference(shape, dtype):
    assert implementation_for("cuda")[0] == "triton"
    inputs = {name: value.cuda() for name, value in make_inputs(*shape).items()}
    exact = run_op(inputs, torch.float64, "reference")
    reference = run_op(inputs, dtype, "reference")
    kernel = run_op(inputs, dtype)
    for name in ("row_losses", "stats", "keys"):
        assert_within_twice_reference_error(kernel[name], reference[name], exact[name], name, torch.float32)
    assert_within_twice_reference_error(kernel["grad"], reference["grad"], exact["grad"], "grad", dtype)


@pytest.mark.gpu
def test_cuda_deterministic_backward_is_bitwise_reproducible():
    inputs = {name: value.cuda() for name, value in make_inputs(64, 8, 128, 4096).items()}
    torch.use_deterministic_algorithms(True)
    try:
        grads = [run_op(inputs, torch.bfloat16)["grad"] for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.gpu
def test_cuda_kernels_do_not_materialise_the_logits():
    batch, num_keys = 512, 16384
    inputs = {name: (value.float() if value.is_floating_point() else value).cuda()
              for name, value in make_inputs(batch, 8, 128, num_keys).items()}
    clip_q = inputs.pop("clip_q").requires_grad_()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    loss, _, _ = region_infonce(clip_q, **inputs, tau=TAU)
    loss.backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    assert extra < batch * num_keys * 4 / 4, f"{extra} bytes: a quarter of one fp32 [B, K] logit matrix"


# --- interpreter worker --------------------------------------------------------------------------------------


def compute_interpreted_results(folder: Path) -> None:
    """Run in a subprocess with TRITON_INTERPRET=1: the op on every case and dtype -> results.pt."""
    cases = torch.load(folder / "cases.pt")
    results = {"implementation": implementation_for("cpu")}
    for name, inputs in cases.items():
        torch.use_deterministic_algorithms(INTERPRETER_CASES[name][4])
        results[name] = {dtype: run_op(inputs, dtype) for dtype in LOW_PRECISION}
    torch.use_deterministic_algorithms(False)
    small = make_inputs(3, 5, 24, 37, dtype=torch.float32)
    small["clip_q"].requires_grad_()
    try:
        torch.library.opcheck(torch.ops.uptal.region_infonce.default, (*small.values(), TAU))
        results["opcheck"] = "ok"
    except Exception as failure:  # reported to the parent, which asserts on it
        results["opcheck"] = f"{type(failure).__name__}: {failure}"
    torch.save(results, folder / "results.pt")


if __name__ == "__main__":
    assert os.environ.get("TRITON_INTERPRET") == "1", "run by the `interpreted` fixture only"
    compute_interpreted_results(Path(sys.argv[1]))
