"""Optimizers that Stacey contains (docs/algorithm.md): Lion at p = inf, tau = 0, and SGD on an exponential
moving average of the gradients at p = 2, tau = 1, beta1 = beta2. The tuner's anchor points start
from these, so a study is never worse than them at equal budget."""

import math

import pytest
import torch
from lion_pytorch import Lion

from stacey_lightning import Stacey

PATHS = [dict(foreach=False), dict(foreach=True), dict(fused=True)]
STEPS = 25


def _parameters(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 2, 4)]
    return [torch.nn.Parameter(torch.randn(*shape, generator=generator, dtype=torch.float64)) for shape in shapes]


def _gradients(step: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in params]


@pytest.mark.parametrize("path", PATHS, ids=["plain", "foreach", "fused"])
def test_stacey_at_p_inf_and_tau_0_is_lion(path):
    stacey_params, lion_params = _parameters(), _parameters()
    # eps only keeps s(c) = c / (|c| + eps) finite; this small it leaves sign(c) exact in float64.
    stacey = Stacey(stacey_params, lr=3e-3, p=math.inf, tau=0.0, betas=(0.9, 0.99), weight_decay=0.1, eps=1e-300,
                    **path)  # fmt: skip
    lion = Lion(lion_params, lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    for step in range(STEPS):
        for param, lion_param, grad in zip(stacey_params, lion_params, _gradients(step, stacey_params)):
            param.grad, lion_param.grad = grad.clone(), grad.clone()
        stacey.step()
        lion.step()
    for param, lion_param in zip(stacey_params, lion_params):
        torch.testing.assert_close(param, lion_param, rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(stacey.state[param]["m"], lion.state[lion_param]["exp_avg"], rtol=1e-13, atol=0)


@pytest.mark.parametrize("path", PATHS, ids=["plain", "foreach", "fused"])
def test_stacey_at_p_2_tau_1_and_equal_betas_is_sgd_on_an_ema_momentum(path):
    """x_t = x_{t-1} - alpha * m_t with m_t = beta * m_{t-1} + (1 - beta) * g_t and m_0 = 0. (torch's SGD
    starts its momentum buffer at the first gradient, so it differs over the first steps.)"""
    beta, alpha = 0.9, 0.5
    params = _parameters()
    reference = [param.detach().clone() for param in params]
    momenta = [torch.zeros_like(param) for param in reference]
    stacey = Stacey(params, lr=0.7, p=2.0, alpha=alpha, tau=1.0, betas=(beta, beta), weight_decay=0.0, **path)
    for step in range(STEPS):
        gradients = _gradients(step, params)
        for param, grad in zip(params, gradients):
            param.grad = grad.clone()
        stacey.step()
        for x, m, grad in zip(reference, momenta, gradients):
            m.mul_(beta).add_(grad, alpha=1 - beta)
            x.sub_(alpha * m)
    for param, expected in zip(params, reference):
        torch.testing.assert_close(param.detach(), expected, rtol=1e-12, atol=1e-12)
