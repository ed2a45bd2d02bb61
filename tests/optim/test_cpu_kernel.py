"""The CPU kernel in C (stacey_lightning/optim/cpu_kernel.c) against the plain formulas, for every form of
the direction, on the values that break fast logs and exps, at every thread count; and what happens where
it cannot be built."""

import math
import subprocess
import tempfile
import warnings

import pytest
import torch

from stacey_lightning import Stacey
from stacey_lightning.optim import _cpu_kernel, _fused
from stacey_lightning.optim._functional import direction, direction_exponent, direction_kind
from stacey_lightning.optim._fused import coefficients

HYPER = dict(lr=0.03, alpha=0.2, tau=0.1, beta1=0.8, beta2=0.95, weight_decay=0.1, eps=1e-6)


def _kernel():
    kernel = _cpu_kernel.kernel()
    assert kernel is not None, f"the C kernel did not build here: {_cpu_kernel._LIBRARY.failed}"
    return kernel


def _plain(x, g, z, m, p, **hyper):
    """One p2 step by the plain formulas, in float64: new x, z and m, and for each the sum of its terms'
    magnitudes, the scale of float32's rounding error."""
    x, g, z, m = (t.double() for t in (x, g, z, m))
    c = hyper["beta1"] * m + (1 - hyper["beta1"]) * g
    z_new = z - hyper["alpha"] * c
    s = direction(c, direction_kind(p), direction_exponent(p), hyper["eps"])
    lr, tau = hyper["lr"], hyper["tau"]
    z_scale = z.abs() + (hyper["alpha"] * c).abs()
    decay, step = 1 - lr * hyper["weight_decay"], (1 - tau) * lr * s
    m_terms = (hyper["beta2"] * m, (1 - hyper["beta2"]) * g)
    return [
        (decay * x + tau * (z_new - x) - step, (decay + tau) * x.abs() + tau * z_scale + step.abs()),
        (z_new, z_scale),
        (m_terms[0] + m_terms[1], m_terms[0].abs() + m_terms[1].abs()),
    ]


@pytest.mark.parametrize("p", [1.2, 1.5, 2.0, 2.5, 3.0, 4.5, 7.0, 40.0, math.inf])
def test_c_kernel_matches_the_plain_formulas_over_every_magnitude(p):
    gen = torch.Generator().manual_seed(0)
    n = 100_003  # not a whole number of vectors: each thread's slice ends in the loop's remainder
    # Gradients from 1e-30 up to where |c| ** (1 / (p - 1)) stays a float32, both signs, zeros; momenta of
    # the same sign, so that c's float32 rounding does not cancel (the power's error is what is measured).
    top = min(30.0, 30.0 * (p - 1))
    g = (10.0 ** torch.empty(n, dtype=torch.float64).uniform_(-30, top, generator=gen)).float()
    g *= torch.randn(n, generator=gen).sign()
    m = g * torch.rand(n, generator=gen)
    g[:3], m[:3] = torch.tensor([0.0, 1.2e-38, 1e-45]), 0.0
    if p > 2:  # the float's largest: the power's base is then near FLT_MAX
        g[3:5], m[3:5] = torch.tensor([3.0e38, -3.0e38]), 0.0
    x, z = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    expected = _plain(x, g, z, m, p, **HYPER)
    update = _cpu_kernel.bind(_kernel(), direction_kind(p), coefficients(p=p, maximize=False, **HYPER))
    update(x, g, z, m)
    for got, (want, scale) in zip((x, z, m), expected):
        assert torch.isfinite(got).all()
        error = (got.double() - want).abs()
        worst = int((error / scale).argmax())
        assert error[worst] <= 1e-5 * scale[worst], (worst, got[worst].item(), want[worst].item())


@pytest.mark.parametrize("p", [1.2, 1.5, 2.5, 4.5, 7.0, 40.0])
def test_c_kernels_direction_is_within_a_few_float32_roundings_of_the_exact_one(p):
    """With beta1 = alpha = tau = 0 and x = 0 the update leaves x = -lr * s(g): the power alone."""
    top = min(30.0, 30.0 * (p - 1))
    g = (10.0 ** torch.linspace(-30, top, 200_000, dtype=torch.float64)).float()
    g[1::2] *= -1
    x, z, m = torch.zeros_like(g), torch.zeros_like(g), torch.zeros_like(g)
    scalars = coefficients(lr=1.0, p=p, alpha=0.0, tau=0.0, beta1=0.0, beta2=0.0, weight_decay=0.0, eps=1e-6,
                           maximize=False)  # fmt: skip
    _cpu_kernel.bind(_kernel(), "power", scalars)(x, g, z, m)
    exact = -direction(g.double(), "power", direction_exponent(p), 1e-6)
    # exp(e * log(b)) rounds e * log(b), up to 70 here, to float32: a relative error up to 8e-6 at the ends of
    # the range, as the compiled kernel's Sleef exp and log measure on the same bases (about 1.5e-6 near 1).
    normal = exact.abs() > 1e-30  # p < 2 sends the smallest bases below float32's range
    assert ((x.double() - exact).abs() / exact.abs())[normal].max() < 1e-5


def test_c_kernel_passes_nan_and_inf_through_as_torch_does():
    g = torch.tensor([math.nan, math.inf, -math.inf, 1.0])
    for p in (1.5, 2.0, 3.0, 4.5, math.inf):  # inf ** e: inf for e > 0, 0 for e < 0 (then inf * 0 = nan)
        x, z, m = torch.zeros(4), torch.zeros(4), torch.zeros(4)
        expected = _plain(x, g, z, m, p, **HYPER)
        _cpu_kernel.bind(_kernel(), direction_kind(p), coefficients(p=p, maximize=False, **HYPER))(x, g, z, m)
        for got, (want, _) in zip((x, z, m), expected):
            torch.testing.assert_close(got, want.float(), equal_nan=True)


def test_c_kernel_gives_the_same_bits_at_one_and_two_threads():
    gen = torch.Generator().manual_seed(1)
    tensors = [torch.randn(70_001, generator=gen) for _ in range(4)]
    update = _cpu_kernel.bind(_kernel(), "power", coefficients(p=4.5, maximize=False, **HYPER))
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            copies = [t.clone() for t in tensors]
            update(*copies)
            results.append(copies)
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def _train(p, dtype, **path):
    """Five steps of Stacey on a small net's shapes: its parameters and state, in float64."""
    gen = torch.Generator().manual_seed(2)
    shapes = [(8, 5), (8,), (300, 250), (70_000,)]  # packed small tensors, and tensors of their own
    params = [torch.nn.Parameter(torch.randn(*shape, generator=gen).to(dtype)) for shape in shapes]
    optimizer = Stacey(params, lr=0.03, alpha=0.2, tau=0.1, betas=(0.8, 0.95), weight_decay=0.1, eps=1e-6, p=p,
                       **path)  # fmt: skip
    for _ in range(5):
        for param in params:
            param.grad = torch.randn(param.shape, generator=gen).to(dtype)
        optimizer.step()
    return [t.detach().double() for param in params for t in (param, *optimizer.state[param].values())]


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5, math.inf])
def test_stacey_steps_float32_with_the_c_kernel_as_accurately_as_torchs_own_float32(monkeypatch, p):
    """Against the plain path in float64, the C kernel's error is the plain float32 path's, within a factor
    of 2: at p = inf, c / (|c| + eps) turns c's last bit, where beta1 * m and (1 - beta1) * g cancel, into
    1e-5 of x, and the C kernel rounds c once (a fused multiply-add) where torch rounds it twice."""

    def no_compiled_kernel(variant, kind):
        raise AssertionError(f"the compiled kernel was asked for ({variant}, {kind}): the C kernel should run")

    exact = _train(p, torch.float64, foreach=False)
    plain = _train(p, torch.float32, foreach=False)
    monkeypatch.setattr(_fused.RUNTIME, "kernel", no_compiled_kernel)
    fast = _train(p, torch.float32, fused=True)
    assert len(fast) == len(exact) == 4 * 3  # x, z and m of each parameter
    error, float32_error = (max((a - b).abs().max().item() for a, b in zip(run, exact)) for run in (fast, plain))
    assert error <= 2 * float32_error, (error, float32_error)


def test_the_library_is_built_once_and_loaded_by_later_processes(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    built = _cpu_kernel._build()
    assert built.parent.parent == tmp_path and built.suffix == ".so"
    assert [path.name for path in built.parent.iterdir()] == [built.name]  # no source or partial build left

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert _cpu_kernel._build() == built
    # What a later process loads from the cache computes the update.
    gen = torch.Generator().manual_seed(3)
    x, g, z, m = (torch.randn(1_001, generator=gen) for _ in range(4))
    expected = _plain(x, g, z, m, 4.5, **HYPER)
    function = _cpu_kernel._load(built)["stacey_p2"]
    _cpu_kernel.bind(function, "power", coefficients(p=4.5, maximize=False, **HYPER))(x, g, z, m)
    for got, (want, scale) in zip((x, z, m), expected):
        assert ((got.double() - want).abs() <= 1e-5 * scale).all()


def test_without_a_c_compiler_a_warning_says_so_once_and_the_compiled_kernel_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(_cpu_kernel, "_LIBRARY", _cpu_kernel._Library())
    monkeypatch.setattr(_cpu_kernel, "_COMPILERS", ())
    monkeypatch.delenv("CC", raising=False)
    asked = []
    monkeypatch.setattr(_fused.RUNTIME, "kernel", lambda variant, kind: asked.append((variant, kind)))
    scalars = coefficients(p=4.5, maximize=False, **HYPER)
    with pytest.warns(RuntimeWarning, match=r"could not build its C kernel \(no C compiler"):
        _fused._cpu_update("p2", "power", HYPER["eps"], torch.float32, scalars, ())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        _fused._cpu_update("p2", "power", HYPER["eps"], torch.float32, scalars, ())
        assert _cpu_kernel.adam_kernel() is None  # Adam's norm takes its multi-tensor path, unwarned again
        param = torch.nn.Parameter(torch.ones(3))
        param.grad = torch.ones(3)
        Stacey([param], norm="adam").step()
    assert asked == [("p2", "power")] * 2 and param.detach().lt(1).all()


def test_the_c_kernel_refuses_what_it_cannot_read():
    update = _cpu_kernel.bind(_kernel(), "power", coefficients(p=4.5, maximize=False, **HYPER))
    x = torch.zeros(4, 4).t()
    with pytest.raises(ValueError, match="contiguous float32"):
        update(x, torch.zeros(16), torch.zeros(16), torch.zeros(16))
    with pytest.raises(ValueError, match="one length"):
        update(torch.zeros(16), torch.zeros(15), torch.zeros(16), torch.zeros(16))


def test_a_cache_folder_that_others_may_write_to_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = _cpu_kernel._cache_folder()
    folder.chmod(0o777)
    with pytest.raises(RuntimeError, match="not this user's alone"):
        _cpu_kernel._build()
