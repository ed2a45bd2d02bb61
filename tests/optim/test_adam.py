"""Stacey with norm="adam": the fast path against the plain loop, AdamW as a special case, the errors and the
bias corrections of a parameter that skipped steps (exact resume: test_spectral.py, with Adam's rest)."""

import pytest
import torch

from stacey_lightning import Stacey
from stacey_lightning.optim._adam import _multi_tensor_adam_stacey, _single_tensor_adam_stacey

# A matrix, a vector, a convolution, a scalar: Adam's geometry is elementwise, any shape steps in it.
SHAPES = [(6, 9), (12,), (4, 3, 2, 2), ()]
HYPERPARAMETERS = dict(lr=3e-2, alpha=0.2, tau=0.05, beta1=0.8, beta2=0.95, beta_v=0.9, weight_decay=0.1, eps=1e-8)


def _gradients(step: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]


@pytest.mark.parametrize("maximize", [False, True])
def test_multi_tensor_path_equals_the_plain_loop(maximize):
    generator = torch.Generator().manual_seed(0)
    fast = [[torch.randn(shape, generator=generator) for shape in SHAPES] for _ in range(2)]  # x, z
    fast += [[torch.zeros(shape) for shape in SHAPES] for _ in range(2)]  # m, v
    fast.append([torch.tensor(0.0) for _ in SHAPES])
    plain = [[t.double() for t in tensors] for tensors in fast[:4]] + [[t.clone() for t in fast[4]]]
    for step in range(10):
        grads = _gradients(step, fast[0])
        _multi_tensor_adam_stacey(fast[0], grads, *fast[1:], maximize=maximize, **HYPERPARAMETERS)
        _single_tensor_adam_stacey(plain[0], [g.double() for g in grads], *plain[1:], maximize=maximize,
                                   **HYPERPARAMETERS)  # fmt: skip
    for fast_tensors, plain_tensors in zip(fast, plain):
        for f, p in zip(fast_tensors, plain_tensors):
            torch.testing.assert_close(f.double(), p.double(), rtol=1e-5, atol=1e-6)
    assert [t.item() for t in fast[4]] == [10.0] * len(SHAPES)


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
