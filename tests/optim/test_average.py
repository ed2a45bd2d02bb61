"""The averaged point (``average_decay``): an EMA of the weights, swapped in by eval() and out by train(),
that never changes the training trajectory; against a plain reference loop on every path."""

import copy
import io

import pytest
import torch

from stacey_lightning import Stacey


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _batches(steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 6, generator=gen) for _ in range(steps)]


def _step(model, optimizer, inputs):
    optimizer.zero_grad()
    model(inputs).pow(2).mean().backward()
    optimizer.step()


def _groups(model, norm):
    """Every norm's group: a spectral group takes the matrices, the biases step in Adam's norm beside them."""
    if norm != "spectral":
        return [{"params": list(model.parameters()), "norm": norm}]
    matrices = [p for p in model.parameters() if p.ndim == 2]
    return [{"params": matrices, "norm": "spectral"}, {"params": [p for p in model.parameters() if p.ndim == 1],
                                                        "norm": "adam"}]  # fmt: skip


PATHS = [
    pytest.param("lp", dict(foreach=False), id="lp-loop"),
    pytest.param("lp", dict(foreach=True), id="lp-foreach"),
    pytest.param("lp", dict(), id="lp-default"),
    pytest.param("adam", dict(), id="adam"),
    pytest.param("spectral", dict(), id="spectral"),
]


@pytest.mark.parametrize("norm, path", PATHS)
def test_the_average_is_the_reference_ema_and_the_iterates_are_untouched(norm, path):
    decay, batches = 0.8, _batches(12)
    plain_model, model = _model(), _model()
    plain = Stacey(_groups(plain_model, norm), lr=0.05, p=3.0, **path)
    averaging = Stacey(_groups(model, norm), lr=0.05, p=3.0, average_decay=decay, **path)
    reference = None
    for inputs in batches:
        _step(plain_model, plain, inputs)
        _step(model, averaging, inputs)
        iterate = [p.detach().clone() for p in plain_model.parameters()]
        # The plain loop: the first step's point, then a += (1 - decay) (x - a).
        reference = iterate if reference is None else [a + (1 - decay) * (x - a) for a, x in zip(reference, iterate)]
    # Averaging never moves the training trajectory: bit for bit the run without it.
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain_model.parameters()))
    averaging.eval()
    for param, expected in zip(model.parameters(), reference):
        torch.testing.assert_close(param, expected, rtol=1e-6, atol=1e-7)
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), plain_model.parameters()))
    averaging.train()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), plain_model.parameters()))


def test_eval_and_train_swap_exactly_and_are_idempotent():
    model, batches = _model(), _batches(4)
    optimizer = Stacey(model.parameters(), lr=0.05, average_decay=0.5)
    for inputs in batches:
        _step(model, optimizer, inputs)
    iterate = [p.detach().clone() for p in model.parameters()]
    optimizer.eval()
    optimizer.eval()  # a second eval() swaps nothing back
    average = [p.detach().clone() for p in model.parameters()]
    optimizer.train()
    optimizer.train()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), iterate))
    optimizer.eval()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), average))


def test_a_step_in_eval_mode_is_refused_in_one_line():
    model = _model()
    optimizer = Stacey(model.parameters(), average_decay=0.9)
    _step(model, optimizer, _batches(1)[0])
    optimizer.eval()
    with pytest.raises(RuntimeError, match=r"eval mode.*call optimizer.train\(\) before training"):
        _step(model, optimizer, _batches(1)[0])


def test_without_an_average_eval_and_train_do_nothing_and_the_groups_have_no_modes():
    model = _model()
    optimizer = Stacey(model.parameters())
    _step(model, optimizer, _batches(1)[0])
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.eval()
    _step(model, optimizer, _batches(2)[1])  # no modes: stepping is always allowed
    assert "train_mode" not in optimizer.param_groups[0]
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), before))


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5, True, "0.9"])
def test_a_bad_decay_is_refused_naming_it(decay):
    with pytest.raises(ValueError, match=r"Invalid average_decay: .*must be in \[0, 1\), or None"):
        Stacey(_model().parameters(), average_decay=decay)


def test_a_checkpoint_saved_at_the_average_resumes_the_iterate_exactly():
    """As the mixin saves: the parameters at the average (eval), the optimizer's state holding the iterate."""
    batches = _batches(10)
    straight_model = _model()
    straight = Stacey(straight_model.parameters(), lr=0.05, average_decay=0.7)
    for inputs in batches:
        _step(straight_model, straight, inputs)

    model = _model()
    optimizer = Stacey(model.parameters(), lr=0.05, average_decay=0.7)
    for inputs in batches[:6]:
        _step(model, optimizer, inputs)
    optimizer.eval()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed_model = _model(seed=1)  # other weights: everything comes from the checkpoint
    resumed = Stacey(resumed_model.parameters(), lr=0.05, average_decay=0.7)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["optimizer"])
    resumed.train()
    for inputs in batches[6:]:
        _step(resumed_model, resumed, inputs)
    assert all(torch.equal(p, q) for p, q in zip(resumed_model.parameters(), straight_model.parameters()))
    resumed.eval()
    straight.eval()
    assert all(torch.equal(p, q) for p, q in zip(resumed_model.parameters(), straight_model.parameters()))


def test_a_state_dict_from_before_the_average_loads_without_one():
    model = _model()
    optimizer = Stacey(model.parameters())
    _step(model, optimizer, _batches(1)[0])
    old = copy.deepcopy(optimizer.state_dict())
    for group in old["param_groups"]:
        del group["average_decay"]
    again = Stacey(_model().parameters(), average_decay=0.9)
    again.load_state_dict(old)
    assert again.param_groups[0]["average_decay"] is None


def test_before_its_first_step_eval_leaves_the_optimizer_as_it_was():
    """Nothing averaged yet: the parameters are the iterate in either mode, so eval() neither switches nor adds
    state (torch.distributed.checkpoint takes an empty state for one never stepped, and steps it once)."""
    model = _model()
    optimizer = Stacey(model.parameters(), average_decay=0.9)
    optimizer.eval()
    assert optimizer.param_groups[0]["train_mode"] and not optimizer.state
    _step(model, optimizer, _batches(1)[0])  # allowed: still in train mode


def test_a_group_that_starts_averaging_later_gets_its_modes():
    model, batches = _model(), _batches(3)
    optimizer = Stacey(model.parameters(), lr=0.05)
    _step(model, optimizer, batches[0])
    optimizer.param_groups[0]["average_decay"] = 0.5
    _step(model, optimizer, batches[1])
    _step(model, optimizer, batches[2])
    iterate = [p.detach().clone() for p in model.parameters()]
    optimizer.eval()
    assert not optimizer.param_groups[0]["train_mode"]
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), iterate))
    optimizer.param_groups[0]["average_decay"] = None  # turned off in eval mode: train() still puts x back
    optimizer.train()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), iterate))


def test_a_state_dict_taken_in_eval_mode_keeps_the_iterate_after_train():
    """The mixin's checkpoint: the state taken at the average, then the optimizer switched back before it is
    written; what was taken must not move with it."""
    model = _model()
    optimizer = Stacey(model.parameters(), lr=0.05, average_decay=0.5)
    for inputs in _batches(3):
        _step(model, optimizer, inputs)
    iterate = [p.detach().clone() for p in model.parameters()]
    optimizer.eval()
    taken = optimizer.state_dict()
    optimizer.train()
    held = [taken["state"][index]["average"] for index in range(len(iterate))]
    assert all(torch.equal(a, b) for a, b in zip(held, iterate))
    assert not taken["param_groups"][0]["train_mode"]
