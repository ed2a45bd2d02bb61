"""Stacey with norm="spectral": the fast path against the plain loop (float64 Newton-Schulz), Muon as a
special case, the direction itself, the errors, and exact resume."""

import copy
import io
import math
import subprocess
import sys
from functools import partial

import pytest
import torch

from stacey_lightning import Stacey
from stacey_lightning.optim._spectral import (
    _batched_directions,
    _directions,
    _multi_tensor_spectral_stacey,
    _single_tensor_spectral_stacey,
    newton_schulz,
    ns_precision,
    spectral_direction,
    spectral_stacey,
)

# Wide, tall, square, a convolution viewed as (out, in*kh*kw) wide and one tall, and two of one shape
# (one batch on an accelerator).
SHAPES = [(6, 9), (12, 5), (7, 7), (4, 3, 2, 2), (12, 2, 1, 2), (6, 9)]
# The same, some of them stacks of matrices along their rows (an LSTM's gates, attention's q, k, v): blocks
# wide (2 x 9, 2 x 12) and tall (6 x 5, 6 x 4: their directions come back transposed).
STACKED = [3, 2, 1, 2, 2, 1]
HYPERPARAMETERS = dict(lr=3e-2, alpha=0.2, tau=0.05, beta1=0.8, beta2=0.95, weight_decay=0.1, ns_steps=5)


def _tensors(seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype) for shape in SHAPES]


def _gradients(step: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]


def test_newton_schulz_sets_singular_values_near_one_and_keeps_the_singular_vectors():
    c = torch.randn(20, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    d = newton_schulz(c, dtype=torch.float64)
    singular_values = torch.linalg.svdvals(d)
    assert 0.6 < singular_values.min() and singular_values.max() < 1.25
    u, _, vh = torch.linalg.svd(c, full_matrices=False)
    # The same direction as msign(c) = U V^T, up to the quintic's spread of singular values.
    cosine = (d * (u @ vh)).sum() / (d.norm() * (u @ vh).norm())
    assert cosine > 0.98


def _spread_spectrum(rows: int, cols: int, dtype=torch.float64) -> torch.Tensor:
    """A matrix whose singular values fall from 1 to 1e-6, as a momentum's few large and many small ones do."""
    generator = torch.Generator().manual_seed(4)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, rows, generator=generator, dtype=torch.float64))
    return ((u * torch.logspace(0, -6, rows, dtype=torch.float64)) @ v.T).to(dtype)


@pytest.mark.parametrize(
    "shape", [(8, 40), (40, 8), (3, 8, 20), (3, 20, 8)], ids=["wide", "tall", "batch", "tall-batch"]
)
@pytest.mark.parametrize("steps", [0, 1, 5])
def test_gram_form_equals_the_direct_iteration_in_float64(shape, steps):
    c = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    direct = newton_schulz(c, steps, scale=1.7, gram=False)
    torch.testing.assert_close(newton_schulz(c, steps, scale=1.7, gram=True), direct, rtol=1e-10, atol=1e-12)


def test_gram_form_in_float32_keeps_the_small_singular_values_bfloat16_loses():
    c = _spread_spectrum(64, 576)
    reference = newton_schulz(c, gram=False)

    def error(dtype, gram):
        d = newton_schulz(c.float(), dtype=dtype, gram=gram).double()
        return ((d - reference).norm() / reference.norm()).item()

    assert error(torch.float32, True) < 1e-3
    assert error(torch.float32, False) < 1e-4
    assert error(torch.bfloat16, False) > 0.03  # why float32 is the CPU's default (the module's notes)


def test_the_gram_form_is_taken_for_wide_matrices_in_float32_or_wider_only():
    generator = torch.Generator().manual_seed(6)
    for shape, dtype, gram in [
        ((8, 16), torch.float32, True),
        ((16, 8), torch.float64, True),  # tall: iterated as its wide transpose
        ((8, 15), torch.float32, False),  # under GRAM_ASPECT: the direct form is as fast
        ((8, 16), torch.bfloat16, False),
    ]:
        c = torch.randn(shape, generator=generator).to(dtype)
        assert torch.equal(newton_schulz(c), newton_schulz(c, gram=gram)), (shape, dtype)
        assert not torch.equal(newton_schulz(c, gram=True), newton_schulz(c, gram=False)), (shape, dtype)


# Each setting, in the order a user might make them (the legacy and the new API mixed, after which torch's own
# get_float32_matmul_precision raises), and the form a wide float32 matrix on the CPU then takes.
_PRECISION_SETTINGS = """
import torch
from stacey_lightning.optim._spectral import newton_schulz
c = torch.randn(8, 16)
def form():
    return "gram" if torch.equal(newton_schulz(c), newton_schulz(c, gram=True)) else "direct"
print(form())
torch.set_float32_matmul_precision("high")
print(form())
torch.set_float32_matmul_precision("highest")
torch.backends.cuda.matmul.allow_tf32 = True  # CUDA's alone: the CPU's matmuls stay exact
print(form())
torch.backends.mkldnn.matmul.fp32_precision = "bf16"
print(form())
torch.backends.mkldnn.matmul.fp32_precision = "ieee"
torch.backends.cuda.matmul.fp32_precision = "tf32"
print(form())
"""


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch before 2.9: one global setting")
def test_the_gram_form_needs_float32_matmuls_at_float32_precision_on_the_device():
    """Run apart: the settings are process-wide, and once the new API is used the legacy getter raises."""
    result = subprocess.run([sys.executable, "-c", _PRECISION_SETTINGS], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["gram", "direct", "gram", "direct", "gram"]


def test_spectral_direction_has_adamw_rms_and_views_convolutions_as_matrices():
    c = torch.randn(16, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    d = spectral_direction(c)
    assert d.shape == c.shape
    # Singular values near one: the RMS of a 16 x 36 msign is sqrt(16 / (16 * 36)), times 0.2 sqrt(36).
    expected_rms = math.sqrt(16 / (16 * 36)) * 0.2 * 6
    assert d.pow(2).mean().sqrt().item() == pytest.approx(expected_rms, rel=0.25)
    matrix = spectral_direction(c.reshape(16, 36))
    torch.testing.assert_close(d.reshape(16, 36), matrix)


def test_zero_momentum_gives_a_zero_direction_not_nan():
    assert torch.equal(spectral_direction(torch.zeros(3, 5)), torch.zeros(3, 5))


@pytest.mark.parametrize("blocks", [[1] * len(SHAPES), STACKED], ids=["whole", "stacked"])
@pytest.mark.parametrize("maximize, tau", [(False, 0.05), (True, 0.05), (False, 0.0)])
def test_multi_tensor_path_equals_the_plain_loop_in_float64(maximize, tau, blocks):
    """In float32 (pinned, as on every CPU by default; bfloat16's error the Muon test bounds); at tau = 0 the
    fast path skips the pull towards z; each matrix whole, or some of them as stacks of matrices."""
    hyperparameters = {**HYPERPARAMETERS, "tau": tau, "blocks": blocks}
    fast_state = [_tensors(seed) for seed in (0, 1, 2)]  # x, z, m in float32
    plain_state = [[t.double() for t in tensors] for tensors in fast_state]
    for step in range(10):
        grads = _gradients(step, fast_state[0])
        _multi_tensor_spectral_stacey(
            *fast_state[:1], grads, *fast_state[1:], maximize=maximize, ns_dtype="float32", **hyperparameters
        )
        _single_tensor_spectral_stacey(
            *plain_state[:1],
            [g.double() for g in grads],
            *plain_state[1:],
            maximize=maximize,
            ns_dtype="float64",
            **hyperparameters,
        )
    for fast, plain in zip(fast_state, plain_state):
        for f, p in zip(fast, plain):
            torch.testing.assert_close(f.double(), p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "path",
    [dict(foreach=False), dict(foreach=True), dict(), dict(ns_dtype="bfloat16"), dict(ns_dtype=torch.float32)],
    ids=["plain", "foreach", "default", "bfloat16", "float32"],
)
def test_stacey_at_tau_0_and_betas_mu_squared_mu_is_torch_muon(path):
    mu, weight_decay, lr = 0.9, 0.05, 2e-2
    matrices = [(8, 12), (10, 6)]
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(shape, generator=generator) for shape in matrices]
    stacey_params = [torch.nn.Parameter(t.clone()) for t in start]
    muon_params = [torch.nn.Parameter(t.clone()) for t in start]
    stacey = Stacey(stacey_params, lr=lr, tau=0.0, alpha=0.3, betas=(mu**2, mu), weight_decay=weight_decay,
                    norm="spectral", **path)  # fmt: skip
    muon = torch.optim.Muon(muon_params, lr=lr, momentum=mu, nesterov=True, weight_decay=weight_decay,
                            adjust_lr_fn="match_rms_adamw")  # fmt: skip
    for step in range(20):
        for param, muon_param, grad in zip(stacey_params, muon_params, _gradients(step, stacey_params)):
            param.grad, muon_param.grad = grad.clone(), grad.clone()
        stacey.step()
        muon.step()
    for param, muon_param, initial in zip(stacey_params, muon_params, start):
        moved = (muon_param - initial).norm()
        # torch's Newton-Schulz runs in bfloat16; ours in float32 (the CPU's default) is about 0.7% apart, in
        # bfloat16 0.1%: the roundings differ where the scale rides in a matmul.
        assert (param - muon_param).norm() < (0.002 if path.get("ns_dtype") == "bfloat16" else 0.01) * moved


@pytest.mark.parametrize(
    "path, device",
    [(dict(foreach=False), "cpu"), (dict(), "cpu"), pytest.param(dict(), "cuda", marks=pytest.mark.gpu)],
    ids=["plain", "default", "cuda"],
)
def test_a_stack_of_matrices_steps_as_those_matrices_apart(path, device):
    """A (3 r, c) weight with blocks=3 (an LSTM's gates, attention's q, k, v) moves as three (r, c) weights,
    each in its own spectral norm and at its own shape's RMS, to float32's rounding (its blocks are one batch,
    whose matmuls round apart from single ones); the other weight of the group (blocks given one per parameter)
    as it would alone."""
    generator = torch.Generator().manual_seed(5)
    stacked, other = (torch.randn(shape, generator=generator).to(device) for shape in ((12, 5), (4, 6)))
    together = [torch.nn.Parameter(stacked.clone()), torch.nn.Parameter(other.clone())]
    apart = [torch.nn.Parameter(block.clone()) for block in stacked.split(4)] + [torch.nn.Parameter(other.clone())]
    options = dict(lr=2e-2, tau=0.05, alpha=0.3, betas=(0.9, 0.95), weight_decay=0.1, norm="spectral", **path)
    optimizer = Stacey([{"params": together, "blocks": [3, 1]}], **options)
    reference = Stacey(apart, **options)
    for step in range(5):
        grad, other_grad = _gradients(step, together)
        grad, other_grad = grad.to(device), other_grad.to(device)
        for param, g in zip(together, (grad, other_grad)):
            param.grad = g.clone()
        for param, g in zip(apart, [*grad.split(4), other_grad]):
            param.grad = g.clone()
        optimizer.step()
        reference.step()

    same = partial(torch.testing.assert_close, rtol=1e-5, atol=1e-6)
    same(together[0], torch.cat(apart[:3]))
    assert torch.equal(together[1], apart[3])
    state, reference_state = optimizer.state[together[0]], [reference.state[param] for param in apart[:3]]
    same(state["z"], torch.cat([s["z"] for s in reference_state]))
    # Not what the whole matrix does: three maps, three directions.
    whole = torch.nn.Parameter(stacked.clone())
    alone = Stacey([whole], **options)
    for step in range(5):
        whole.grad = _gradients(step, together)[0].to(device)
        alone.step()
    assert not torch.allclose(whole, together[0])


def test_stacked_maps_taken_as_one_batch_equal_one_map_at_a_time():
    """What an accelerator runs (one batch per block shape), checked on the CPU: tall blocks (an LSTM's hidden
    weight, 4 blocks of 6 x 3), a stack of 2 and a whole matrix sharing that block shape, each direction as one
    map at a time gives it; and the accelerator's routing, shapes only, on the meta device."""
    generator = torch.Generator().manual_seed(7)
    cs = [torch.randn(rows, 3, generator=generator, dtype=torch.float64) for rows in (24, 12, 6)]
    blocks = [4, 2, 1]
    for c, k, d in zip(cs, blocks, _batched_directions(cs, blocks, 5, None)):
        one_at_a_time = spectral_direction(c, blocks=k, batched=False)
        torch.testing.assert_close(d, one_at_a_time)
        torch.testing.assert_close(spectral_direction(c, blocks=k, batched=True), one_at_a_time)
        assert d.shape == c.shape and d.dtype == c.dtype
    meta = [torch.empty(shape, device="meta") for shape in [(2048, 128), (512, 128), (24, 8), (8, 2, 3, 3)]]
    directions = _directions(meta, [None] * 4, [4, 1, 3, 2], 5, None)
    assert [d.shape for d in directions] == [c.shape for c in meta]
    for bad in (5, 0, -3):
        with pytest.raises(ValueError, match=f"Invalid blocks: {bad} for a matrix of 24 rows"):
            spectral_direction(torch.randn(24, 8), blocks=bad)
    matrices = [torch.randn(12, 5), torch.randn(6, 5)]  # the functional step, as Stacey's groups do not reach it
    with pytest.raises(ValueError, match="Invalid blocks: a list of 1 for 2 parameters"):
        spectral_stacey(matrices, matrices, [t.clone() for t in matrices], [t.clone() for t in matrices], blocks=[3],
                        lr=0.1, alpha=0.0, tau=0.0, beta1=0.9, beta2=0.95, weight_decay=0.0, ns_steps=5)  # fmt: skip


def test_newton_schulz_runs_in_float32_on_the_cpu_unless_pinned():
    assert ns_precision(torch.zeros(2, 2)) == torch.float32
    assert ns_precision(torch.zeros(2, 2, dtype=torch.bfloat16)) == torch.float32  # at least float32
    assert ns_precision(torch.zeros(2, 2, dtype=torch.float64)) == torch.float64
    assert ns_precision(torch.zeros(2, 2), "bfloat16") == torch.bfloat16  # pinned: torch's Muon's speed
    assert ns_precision(torch.zeros(2, 2, dtype=torch.float64), "float32") == torch.float32


def test_ns_dtype_is_kept_by_name_and_a_bad_one_is_refused():
    layer = torch.nn.Linear(4, 3)
    optimizer = Stacey([layer.weight], norm="spectral", ns_dtype=torch.bfloat16)
    assert optimizer.param_groups[0]["ns_dtype"] == "bfloat16"  # a name: it reads the same in a checkpoint
    assert Stacey([layer.weight], norm="spectral").param_groups[0]["ns_dtype"] is None
    with pytest.raises(ValueError, match=r"Invalid ns_dtype: 'half' \(choose one of bfloat16, float32, float64"):
        Stacey([layer.weight], norm="spectral", ns_dtype="half")
    optimizer.param_groups[0]["ns_dtype"] = torch.bfloat16  # set by hand after construction: refused at the step
    layer.weight.grad = torch.ones_like(layer.weight)
    with pytest.raises(ValueError, match=r"Invalid ns_dtype: torch.bfloat16 \(choose one of"):
        optimizer.step()


def test_spectral_groups_refuse_vectors_and_the_pp_variant_and_bad_ns_steps():
    layer = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"norm: 'spectral' for a parameter of shape \(3,\) in group 'vector'"):
        Stacey([{"params": [layer.bias], "norm": "spectral", "name": "vector"}])
    with pytest.raises(ValueError, match="variant: 'pp' with norm='spectral'"):
        Stacey([layer.weight], norm="spectral", variant="pp")
    with pytest.raises(ValueError, match="Invalid norm: 'l2'"):
        Stacey([layer.weight], norm="l2")
    with pytest.raises(ValueError, match="Invalid ns_steps: 0"):
        Stacey([layer.weight], norm="spectral", ns_steps=0)
    gru = torch.nn.GRU(4, 6)  # weights (18, 4) and (18, 6): three gates
    with pytest.raises(ValueError, match=r"Invalid blocks: 4 for a parameter of shape \(18, 4\) in group 'gru'"):
        Stacey([{"params": [gru.weight_ih_l0], "norm": "spectral", "blocks": 4, "name": "gru"}])
    for bad in (0, True, 1.5, [3, 0], ["3", 3]):
        with pytest.raises(ValueError, match=r"Invalid blocks: .* \(must be an integer >= 1, or a list of one per"):
            Stacey([{"params": [gru.weight_ih_l0, gru.weight_hh_l0], "norm": "spectral", "blocks": bad}])
    for bad in ([3], [3, 3, 3]):
        with pytest.raises(ValueError, match=rf"Invalid blocks: a list of {len(bad)} for the 2 parameters of a group"):
            Stacey([{"params": [gru.weight_ih_l0, gru.weight_hh_l0], "norm": "spectral", "blocks": bad}])
    # Elementwise norms need no blocks, but a malformed count is still refused; a fitting one is kept.
    with pytest.raises(ValueError, match="Invalid blocks: -1"):
        Stacey([{"params": [gru.weight_ih_l0], "blocks": -1}])
    assert Stacey([{"params": [gru.weight_ih_l0], "blocks": 3}]).param_groups[0]["blocks"] == 3
    optimizer = Stacey([{"params": [gru.weight_ih_l0], "norm": "spectral", "blocks": 3}])
    optimizer.param_groups[0]["blocks"] = 4  # set by hand after construction: refused at the step
    gru.weight_ih_l0.grad = torch.ones_like(gru.weight_ih_l0)
    with pytest.raises(ValueError, match=r"Invalid blocks: 4 for a parameter of shape \(18, 4\) in a group"):
        optimizer.step()


@pytest.mark.parametrize("rest", ["lp", "adam"])
def test_a_spectral_state_dict_resumes_bit_identically(rest):
    """With the biases in the l_p norm, or in Adam's (whose state adds v and a step count per parameter)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    def groups(model):
        return [
            {"params": [model[0].weight, model[2].weight], "norm": "spectral", "blocks": [2, 1]},
            {"params": [model[0].bias, model[2].bias], "norm": rest},
        ]

    optimizer = Stacey(groups(model), lr=1e-2, tau=0.02)
    inputs = torch.randn(32, 6)

    def train(model, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            model(inputs).pow(2).mean().backward()
            optimizer.step()

    train(model, optimizer, 3)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer)
    resumed_model = copy.deepcopy(model)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = Stacey(groups(resumed_model), lr=1e-2, tau=0.02)
    resumed.load_state_dict(checkpoint["optimizer"])
    assert resumed.param_groups[0]["norm"] == "spectral" and resumed.param_groups[0]["blocks"] == [2, 1]
    assert ("step" in resumed.state[resumed_model[0].bias]) == (rest == "adam")
    train(model, optimizer, 3)
    train(resumed_model, resumed, 3)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_a_state_dict_from_before_blocks_resumes_with_each_matrix_whole():
    """A checkpoint written before ``blocks`` existed goes on as it ran: every matrix whole."""
    weight = torch.nn.GRU(4, 6).weight_ih_l0  # three gates of 6 x 4
    copy_ = torch.nn.Parameter(weight.detach().clone())
    before = Stacey([{"params": [weight], "norm": "spectral"}])
    weight.grad, copy_.grad = torch.ones_like(weight), torch.ones_like(weight)
    before.step()
    saved = copy.deepcopy(before.state_dict())  # as a checkpoint file holds it, not the live state
    del saved["param_groups"][0]["blocks"]
    copy_.data.copy_(weight.detach())
    resumed = Stacey([{"params": [copy_], "norm": "spectral", "blocks": 3}])
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["blocks"] == 1
    weight.grad, copy_.grad = _gradients(1, [weight])[0], _gradients(1, [weight])[0]
    before.step()
    resumed.step()
    assert torch.equal(weight, copy_)  # the next step as the checkpoint's run took it


@pytest.mark.gpu
def test_on_cuda_the_direction_is_taken_in_bfloat16_as_torch_muon_takes_it():
    generator = torch.Generator().manual_seed(5)
    start = [torch.randn(shape, generator=generator).cuda() for shape in [(64, 96), (128, 32)]]
    stacey_params = [torch.nn.Parameter(t.clone()) for t in start]
    muon_params = [torch.nn.Parameter(t.clone()) for t in start]
    stacey = Stacey(stacey_params, lr=1e-2, tau=0.0, betas=(0.9**2, 0.9), weight_decay=0.01, norm="spectral")
    muon = torch.optim.Muon(muon_params, lr=1e-2, momentum=0.9, weight_decay=0.01, adjust_lr_fn="match_rms_adamw")
    for step in range(10):
        generator = torch.Generator().manual_seed(2000 + step)
        for param, muon_param in zip(stacey_params, muon_params):
            grad = torch.randn(param.shape, generator=generator).cuda()
            param.grad, muon_param.grad = grad.clone(), grad.clone()
        stacey.step()
        muon.step()
    for param, muon_param, initial in zip(stacey_params, muon_params, start):
        # The same bfloat16 matmuls: closer than the CPU's float32 against torch's bfloat16.
        assert (param - muon_param).norm() < 0.01 * (muon_param - initial).norm()
