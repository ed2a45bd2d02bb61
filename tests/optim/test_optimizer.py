"""The Stacey class: validation, state, checkpoints, schedulers, compile behaviour, convergence."""

import copy
import io
import math
import warnings

import pytest
import torch
from sklearn.datasets import load_digits

from stacey_lightning import Stacey
from stacey_lightning.optim import _cpu_kernel
from stacey_lightning.optim._fused import RUNTIME


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _train(model, optimizer, steps, seed=0, scheduler=None):
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    for _ in range(steps):
        inputs = torch.randn(16, 4, generator=gen).to(device)
        loss = model(inputs).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(p=1.0), "Invalid p: 1.0"),
        (dict(p=0.5), "Invalid p: 0.5"),
        (dict(lr=-1e-3), "Invalid lr: -0.001"),
        (dict(alpha=-0.1), "Invalid alpha: -0.1"),
        (dict(tau=1.5), "Invalid tau: 1.5"),
        (dict(tau=-0.1), "Invalid tau: -0.1"),
        (dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
        (dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
        (dict(eps=0.0), "Invalid eps: 0.0"),
        (dict(weight_decay=-1e-4), "Invalid weight_decay: -0.0001"),
        (dict(variant="p3"), "Invalid variant: 'p3'"),
        (dict(variant="pp", p=math.inf), "Invalid p: inf with variant='pp'"),
        (dict(fused=True, foreach=True), "mutually exclusive"),
    ],
)
def test_invalid_hyperparameters_name_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Stacey(_model().parameters(), **kwargs)


def test_invalid_value_in_a_param_group_is_rejected():
    model = _model()
    with pytest.raises(ValueError, match="Invalid p: 0.9"):
        Stacey([{"params": model[0].parameters(), "p": 0.9}, {"params": model[2].parameters()}])


def test_complex_parameters_and_sparse_gradients_raise_clear_errors():
    with pytest.raises(ValueError, match="complex parameters"):
        Stacey([torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))])
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        Stacey(embedding.parameters()).step()


def test_step_returns_closure_loss_and_skips_params_without_grad():
    model = _model()
    frozen = torch.nn.Parameter(torch.ones(3))
    optimizer = Stacey([*model.parameters(), frozen], foreach=False)
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = model(torch.ones(2, 4)).sum()
        loss.backward()
        losses.append(loss)
        return loss

    assert optimizer.step(closure) is losses[-1] and len(losses) == 1  # the closure's own loss, computed once
    assert optimizer.step() is None
    assert torch.equal(frozen, torch.ones(3)) and frozen not in optimizer.state


def test_state_is_z_and_m_under_plain_keys():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = Stacey(model.parameters(), foreach=False, tau=0.0, lr=0.0, alpha=0.0)
    _train(model, optimizer, 1)
    for param, initial in zip(model.parameters(), before):
        assert set(optimizer.state[param]) == {"z", "m"}
        torch.testing.assert_close(optimizer.state[param]["z"], initial)  # z starts as a copy of x


@pytest.mark.parametrize("path", [dict(foreach=False), dict(foreach=True), dict(fused=True)])
def test_state_dict_round_trip_resumes_bit_identically(path):
    reference_model = _model()
    reference = Stacey(reference_model.parameters(), weight_decay=0.01, **path)
    _train(reference_model, reference, 6, seed=1)
    _train(reference_model, reference, 6, seed=2)

    model = _model()
    optimizer = Stacey(model.parameters(), weight_decay=0.01, **path)
    _train(model, optimizer, 6, seed=1)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    resumed_model = _model(seed=123)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = Stacey(resumed_model.parameters(), lr=0.5, p=2.0, **path)  # saved hyperparameters win
    resumed.load_state_dict(checkpoint["optimizer"])
    _train(resumed_model, resumed, 6, seed=2)
    for expected, actual in zip(reference_model.parameters(), resumed_model.parameters()):
        assert torch.equal(expected, actual)


def test_deepcopy_copies_state():
    model = _model()
    optimizer = Stacey(model.parameters(), foreach=True)
    _train(model, optimizer, 2)
    clone = copy.deepcopy(optimizer)
    first = next(iter(optimizer.state.values()))["z"]
    cloned_first = next(iter(clone.state.values()))["z"]
    assert torch.equal(first, cloned_first) and first.data_ptr() != cloned_first.data_ptr()


def test_state_dict_from_before_an_option_existed_still_loads():
    model = _model()
    optimizer = Stacey(model.parameters(), foreach=True)
    _train(model, optimizer, 2)
    old = optimizer.state_dict()
    for group in old["param_groups"]:
        for key in ("variant", "maximize", "fused", "initial_lr_for_alpha"):
            del group[key]
    fresh = Stacey(model.parameters(), foreach=True)
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["variant"] == "p2"
    assert fresh.param_groups[0]["initial_lr_for_alpha"] == fresh.param_groups[0]["lr"]
    _train(model, fresh, 1)


def test_scheduler_scales_primal_and_dual_steps_alike():
    param = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    optimizer = Stacey([param], lr=0.1, alpha=0.3, tau=0.5, foreach=False)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.25)
    param.grad = torch.ones(5, dtype=torch.float64)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    z_before = optimizer.state[param]["z"].clone()
    m = optimizer.state[param]["m"].clone()
    optimizer.step()
    c = 0.9 * m + 0.1 * param.grad
    torch.testing.assert_close(optimizer.state[param]["z"], z_before - 0.3 * 0.25 * c)


@pytest.mark.parametrize("follows", [False, True])
def test_tau_follows_the_schedule_only_when_asked(follows):
    """tau_t = tau * lr / initial lr with tau_follows_lr (as alpha always does); the paper's constant tau otherwise."""
    param = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    optimizer = Stacey([param], lr=0.1, alpha=0.3, tau=0.5, tau_follows_lr=follows, foreach=False)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.25)
    param.grad = torch.ones(5, dtype=torch.float64)
    optimizer.step()
    scheduler.step()
    x, z, m = param.detach().clone(), optimizer.state[param]["z"].clone(), optimizer.state[param]["m"].clone()
    optimizer.step()
    c = 0.9 * m + 0.1 * param.grad
    z_new = z - 0.3 * 0.25 * c
    y = x - 0.025 * c * (c.abs() + 1e-8) ** ((2 - 4.0) / (4.0 - 1))
    tau = 0.5 * 0.25 if follows else 0.5
    torch.testing.assert_close(param.detach(), y + tau * (z_new - y))


def test_without_scheduler_dual_step_is_exactly_alpha():
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = Stacey([param], lr=0.07, alpha=0.3, foreach=False)
    param.grad = torch.ones(3, dtype=torch.float64)
    optimizer.step()
    torch.testing.assert_close(optimizer.state[param]["z"], torch.full((3,), -0.3 * 0.1, dtype=torch.float64))


def test_each_param_group_uses_its_own_p():
    first, second = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    optimizer = Stacey(
        [{"params": [first], "p": 2.0}, {"params": [second], "p": math.inf}],
        lr=1.0,
        tau=0.0,
        betas=(0.0, 0.0),
        foreach=False,
    )
    grad = torch.tensor([0.5, -0.25, 2.0, -4.0])
    first.grad, second.grad = grad.clone(), grad.clone()
    optimizer.step()
    torch.testing.assert_close(first.detach(), -grad)  # p = 2: the gradient itself
    torch.testing.assert_close(second.detach(), -grad.sign(), atol=1e-6, rtol=0)  # p = inf: its sign


CUDA = pytest.mark.gpu


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_fused_compile_count_stays_flat_while_lr_and_p_change(device):
    torch._dynamo.utils.counters.clear()
    model = _model().to(device)
    optimizer = Stacey(model.parameters(), p=4.5, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    _train(model, optimizer, 2, scheduler=scheduler)
    warm = torch._dynamo.utils.counters["stats"]["unique_graphs"]  # 0 if earlier tests compiled them
    for p in (5.0, 7.5, 12.0):
        optimizer.param_groups[0]["p"] = p
        optimizer.param_groups[0]["alpha"] *= 0.5
        _train(model, optimizer, 2, scheduler=scheduler)
    # A new optimizer, as a tuning study builds for each trial, reuses the kernels too.
    other = _model(seed=3).to(device)
    _train(other, Stacey(other.parameters(), p=6.0, lr=0.3, tau=0.2, weight_decay=0.1, fused=True), 2)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == warm


def test_fused_falls_back_to_foreach_with_one_warning_when_compiling_is_impossible(monkeypatch):
    def refuse(*args, **kwargs):
        raise torch._dynamo.exc.BackendCompilerFailed("inductor", RuntimeError("no C++ compiler"), None)

    monkeypatch.setattr(RUNTIME, "disabled_reason", None)
    monkeypatch.setattr(RUNTIME, "kernel", lambda variant, kind: refuse)
    monkeypatch.setattr(_cpu_kernel, "kernel", lambda: None)  # nor the C kernel (float32)
    model, reference_model = _model(), _model()
    optimizer = Stacey(model.parameters())  # default: fused
    reference = Stacey(reference_model.parameters(), foreach=False)
    with pytest.warns(RuntimeWarning, match="falls back to the foreach path") as record:
        _train(model, optimizer, 3)
    assert len(record) == 1
    _train(reference_model, reference, 3)
    for expected, actual in zip(reference_model.parameters(), model.parameters()):
        torch.testing.assert_close(actual, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _train(model, optimizer, 1)


def _minimise(function, start, steps, **kwargs):
    x = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    optimizer = Stacey([x], foreach=True, **kwargs)
    initial = function(x).item()
    for _ in range(steps):
        optimizer.zero_grad()
        function(x).backward()
        optimizer.step()
    return initial, function(x).item()


@pytest.mark.parametrize("p", [2.0, 3.0, 4.5, math.inf])
def test_converges_on_a_quadratic(p):
    scales = torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64)
    initial, final = _minimise(
        lambda x: (scales * x**2).sum(), [3.0, -2.0, 1.0], 400, p=p, lr=0.03, alpha=0.05, tau=0.3
    )
    assert final < initial * 1e-3


def test_converges_on_rosenbrock():
    rosenbrock = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2  # noqa: E731
    initial, final = _minimise(rosenbrock, [-1.5, 2.0], 3000, p=3.0, lr=2e-3, alpha=1e-3, tau=0.01)
    assert final < initial * 1e-2


def test_trains_an_mlp_on_digits():
    digits = load_digits()
    inputs = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    targets = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    optimizer = Stacey(model.parameters(), p=4.0, lr=1e-2, alpha=0.1, tau=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    initial = loss_fn(model(inputs), targets).item()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for batch in torch.randperm(len(inputs), generator=gen).split(32):
            optimizer.zero_grad()
            loss_fn(model(inputs[batch]), targets[batch]).backward()
            optimizer.step()
    assert loss_fn(model(inputs), targets).item() < initial / 5


def test_fused_takes_the_foreach_path_with_one_warning_past_the_recompile_limit(monkeypatch):
    def limit_hit(*args, **kwargs):
        raise torch._dynamo.exc.FailOnRecompileLimitHit("recompile_limit reached with fullgraph=True")

    monkeypatch.setattr(RUNTIME, "_recompile_limit_warned", False)
    monkeypatch.setattr(RUNTIME, "kernel", lambda variant, kind: limit_hit)
    monkeypatch.setattr(_cpu_kernel, "kernel", lambda: None)
    model, reference_model = _model(), _model()
    optimizer = Stacey(model.parameters(), fused=True)
    reference = Stacey(reference_model.parameters(), foreach=False)
    with pytest.warns(RuntimeWarning, match="recompile limit") as record:
        _train(model, optimizer, 3)
    assert len(record) == 1 and RUNTIME.supported()  # the fused path stays on for other lists
    _train(reference_model, reference, 3)
    for expected, actual in zip(reference_model.parameters(), model.parameters()):
        torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("path", [dict(foreach=False), dict(foreach=True), dict(fused=True)])
@pytest.mark.parametrize("variant, p", [("p2", 3.0), ("p2", math.inf), ("pp", 4.5)])
def test_a_zero_step_leaves_parameters_bit_identical(path, variant, p):
    """torch.distributed.checkpoint steps a fresh optimizer once with zero gradients and lr = 0 before it
    loads the saved state (FSDP2's exact resume depends on that step changing nothing)."""
    from torch.distributed.checkpoint.state_dict import _init_optim_state

    model = _model()
    before = [param.detach().clone() for param in model.parameters()]
    optimizer = Stacey(model.parameters(), p=p, variant=variant, tau=0.3, weight_decay=0.1, **path)
    _init_optim_state(optimizer)
    assert optimizer.state  # the state exists now, as DCP needs
    for expected, param in zip(before, model.parameters()):
        assert torch.equal(param, expected)
