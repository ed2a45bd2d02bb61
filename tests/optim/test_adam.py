"""Stacey with norm="adam": the fast paths (multi-tensor, and the C kernel on the CPU in float32) against the
plain loop, AdamW as a special case, the errors and the bias corrections of a parameter that skipped steps
(exact resume: test_spectral.py, with Adam's rest)."""

import pytest
import torch

from stacey_lightning import Stacey
from stacey_lightning.optim import _cpu_kernel
from stacey_lightning.optim._adam import _fused_adam_stacey, _multi_tensor_adam_stacey, _single_tensor_adam_stacey
from stacey_lightning.optim._fused import SMALL_TENSOR_NUMEL

# A matrix, a vector, a convolution, a scalar: Adam's geometry is elementwise, any shape steps in it; and one
# tensor large enough for a kernel call of its own (the others are packed into one).
SHAPES = [(6, 9), (12,), (4, 3, 2, 2), (), (SMALL_TENSOR_NUMEL + 5,)]
HYPERPARAMETERS = dict(lr=3e-2, alpha=0.2, tau=0.05, beta1=0.8, beta2=0.95, beta_v=0.9, weight_decay=0.1, eps=1e-8)


def _gradients(step: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]


@pytest.fixture
def c_kernel_calls(monkeypatch):
    """The coefficients the C kernel was bound to: one entry per step count of a step."""
    calls = []
    bind = _cpu_kernel.bind_adam

    def recording(function, scalars):
        calls.append(scalars)
        return bind(function, scalars)

    monkeypatch.setattr(_cpu_kernel, "bind_adam", recording)
    assert _cpu_kernel.adam_kernel() is not None, f"the C kernel did not build here: {_cpu_kernel._LIBRARY.failed}"
    return calls


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("fast_step", [_multi_tensor_adam_stacey, _fused_adam_stacey], ids=["foreach", "c-kernel"])
def test_fast_paths_equal_the_plain_loop(fast_step, maximize, c_kernel_calls):
    generator = torch.Generator().manual_seed(0)
    fast = [[torch.randn(shape, generator=generator) for shape in SHAPES] for _ in range(2)]  # x, z
    fast += [[torch.zeros(shape) for shape in SHAPES] for _ in range(2)]  # m, v
    fast.append([torch.tensor(0.0) for _ in SHAPES])
    plain = [[t.double() for t in tensors] for tensors in fast[:4]] + [[t.clone() for t in fast[4]]]
    for step in range(10):
        # The first tensor skips the first three steps: its bias corrections are its own.
        chosen = range(len(SHAPES)) if step >= 3 else range(1, len(SHAPES))
        grads = _gradients(step, fast[0])
        fast_lists = [[tensors[i] for i in chosen] for tensors in fast[:1] + [grads] + fast[1:]]
        plain_grads = [g.double() for g in grads]
        plain_lists = [[tensors[i] for i in chosen] for tensors in plain[:1] + [plain_grads] + plain[1:]]
        fast_step(*fast_lists, maximize=maximize, **HYPERPARAMETERS)
        _single_tensor_adam_stacey(*plain_lists, maximize=maximize, **HYPERPARAMETERS)
    for fast_tensors, plain_tensors in zip(fast, plain):
        for f, p in zip(fast_tensors, plain_tensors):
            torch.testing.assert_close(f.double(), p.double(), rtol=1e-5, atol=1e-6)
    assert [t.item() for t in fast[4]] == [7.0] + [10.0] * (len(SHAPES) - 1)
    # The kernel ran where asked, bound once per step count: one in the first three steps, two after.
    assert len(c_kernel_calls) == (0 if fast_step is _multi_tensor_adam_stacey else 3 + 7 * 2)


def test_the_c_kernel_serves_float32_on_the_cpu_and_the_multi_tensor_path_the_rest(monkeypatch, c_kernel_calls):
    double = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    single = torch.nn.Parameter(torch.randn(5))
    twins = [torch.nn.Parameter(p.detach().clone()) for p in (double, single)]
    stacey, reference = (Stacey(ps, lr=1e-2, norm="adam", foreach=True) for ps in ([double, single], twins))
    stacey.defaults["foreach"] = stacey.param_groups[0]["foreach"] = None  # the default path, the same start
    for _ in range(3):
        for param, twin in zip((double, single), twins):
            param.grad = twin.grad = torch.randn_like(param)
        stacey.step()
        reference.step()
    assert len(c_kernel_calls) == 3  # the float32 tensor's; the float64 one took the multi-tensor path
    torch.testing.assert_close(double, twins[0], rtol=0, atol=0)
    torch.testing.assert_close(single, twins[1], rtol=1e-6, atol=1e-7)
    # Where the kernel cannot be built, the multi-tensor path takes everything.
    monkeypatch.setattr(_cpu_kernel, "adam_kernel", lambda: None)
    single.grad = twins[1].grad = torch.randn(5)
    stacey.step()
    reference.step()
    assert len(c_kernel_calls) == 3 and stacey.state[single]["step"].item() == 4.0


def test_fused_false_or_foreach_true_keeps_the_multi_tensor_path(c_kernel_calls):
    for path in (dict(fused=False), dict(foreach=True)):
        param = torch.nn.Parameter(torch.randn(4))
        param.grad = torch.ones(4)
        Stacey([param], norm="adam", **path).step()
    assert c_kernel_calls == []
    with pytest.raises(ValueError, match="mutually exclusive"):
        Stacey([param], norm="adam", fused=True, foreach=True)


@pytest.mark.parametrize("path", [dict(foreach=False), dict(foreach=True), dict()], ids=["plain", "foreach", "default"])
def test_stacey_at_tau_0_and_equal_betas_is_torch_adamw(path):
    beta, beta_v, weight_decay, lr = 0.9, 0.95, 0.05, 2e-2
    generator = torch.Generator().manual_seed(3)
    start = [torch.randn(shape, generator=generator) for shape in SHAPES]
    stacey_params = [torch.nn.Parameter(t.clone()) for t in start]
    adamw_params = [torch.nn.Parameter(t.clone()) for t in start]
    stacey = Stacey(stacey_params, lr=lr, tau=0.0, alpha=0.3, betas=(beta, beta), beta_v=beta_v,
                    weight_decay=weight_decay, norm="adam", **path)  # fmt: skip
    adamw = torch.optim.AdamW(adamw_params, lr=lr, betas=(beta, beta_v), weight_decay=weight_decay, eps=1e-8)
    for step in range(20):
        for param, adamw_param, grad in zip(stacey_params, adamw_params, _gradients(step, stacey_params)):
            param.grad, adamw_param.grad = grad.clone(), grad.clone()
        stacey.step()
        adamw.step()
    for param, adamw_param in zip(stacey_params, adamw_params):
        torch.testing.assert_close(param, adamw_param, rtol=1e-5, atol=1e-6)


def test_a_parameter_that_skipped_steps_keeps_its_own_bias_correction():
    """A parameter without a gradient in a step is not stepped, and its count stays behind: its first step
    is a bias-corrected first step (AdamW's on its own), however many steps the group made before."""
    late = torch.nn.Parameter(torch.ones(5))
    early = torch.nn.Parameter(torch.ones(5))
    reference = torch.nn.Parameter(torch.ones(5))
    stacey = Stacey([early, late], lr=1e-2, tau=0.0, betas=(0.9, 0.9), norm="adam")
    adamw = torch.optim.AdamW([reference], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.0)
    for _ in range(3):
        early.grad = torch.full((5,), 0.5)
        stacey.step()
    gradient = torch.arange(5.0) - 2
    early.grad, late.grad, reference.grad = gradient.clone(), gradient.clone(), gradient.clone()
    stacey.step()
    adamw.step()
    assert stacey.state[late]["step"].item() == 1.0 and stacey.state[early]["step"].item() == 4.0
    torch.testing.assert_close(late, reference)


def test_adam_groups_refuse_the_pp_variant_and_a_bad_beta_v():
    layer = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="variant: 'pp' with norm='adam'"):
        Stacey(layer.parameters(), norm="adam", variant="pp")
    with pytest.raises(ValueError, match=r"Invalid beta_v: 1\.0"):
        Stacey(layer.parameters(), norm="adam", beta_v=1.0)
