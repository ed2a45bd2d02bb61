"""Baseline optimizers by name or class path, their defaults and overrides, and switching a module to one."""

from __future__ import annotations

import pytest
import torch

from stacey_lightning.baselines import baseline_options, optimizer_class, use_baseline


def test_names_resolve_to_classes_with_their_defaults():
    from lion_pytorch import Lion

    assert optimizer_class("adamw") is torch.optim.AdamW
    assert optimizer_class("sgd") is torch.optim.SGD
    assert optimizer_class("lion") is Lion
    assert optimizer_class("torch.optim.RAdam") is torch.optim.RAdam
    assert baseline_options("sgd") == {"lr": 0.1, "momentum": 0.9}
    assert baseline_options("adamw", {"lr": 1e-3}) == {"lr": 1e-3, "weight_decay": 1e-2}
    assert baseline_options("torch.optim.RAdam") == {}


@pytest.mark.parametrize(
    "name, message",
    [
        ("adamz", "Unknown optimizer 'adamz'"),
        ("torch.optim.Nothing", "not a torch.optim.Optimizer"),
        ("torch.nn.Linear", "not a torch.optim.Optimizer"),
        ("no_such_module.Optimizer", "cannot import module 'no_such_module'"),
    ],
)
def test_bad_names_say_what_is_accepted(name, message):
    with pytest.raises(ValueError, match=message):
        optimizer_class(name)


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="'lion' has no option 'momentum'.*weight_decay"):
        baseline_options("lion", {"momentum": 0.9})


def test_use_baseline_changes_only_that_instance():
    class Net(torch.nn.Linear):
        def configure_optimizers(self):
            raise AssertionError("the class's own optimizer must not be built")

    switched, untouched = Net(3, 2), Net(3, 2)
    options = use_baseline(switched, "sgd", {"lr": 0.5})
    optimizer = switched.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["momentum"] == 0.9
    assert options == {"lr": 0.5, "momentum": 0.9}
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in switched.parameters()}
    with pytest.raises(AssertionError):
        untouched.configure_optimizers()
    with pytest.raises(ValueError, match="not a baseline"):
        use_baseline(untouched, "stacey")
