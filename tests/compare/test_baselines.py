"""Baseline optimizers by name or class path, their defaults and overrides, and switching a module to one."""

from __future__ import annotations

import pytest
import torch

from stacey_lightning import StaceyMixin
from stacey_lightning.baselines import baseline_options, optimizer_choice, optimizer_class


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
        ("torch.optim.Nothing", "module 'torch.optim' has no attribute 'Nothing'"),
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


class _Net(StaceyMixin, torch.nn.Module):
    """A linear layer and a norm: matrices and vectors, as a real model has."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 4)
        self.norm = torch.nn.LayerNorm(4)


def test_a_baseline_gets_stacey_groups_by_kind_and_no_decay_on_vectors():
    net = _Net()
    net.set_optimizer_choice(optimizer_choice("adamw", {"lr": 0.5}))
    optimizer = net.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert set(groups) == {"matrix", "vector"}
    assert groups["matrix"]["weight_decay"] == 1e-2 and groups["vector"]["weight_decay"] == 0.0
    assert all(group["lr"] == 0.5 for group in optimizer.param_groups)
    stacey_groups = net.stacey_param_groups(net.stacey_config())
    assert [[id(p) for p in g["params"]] for g in optimizer.param_groups] == [
        [id(p) for p in g["params"]] for g in stacey_groups
    ]


def test_a_baseline_without_weight_decay_in_its_options_uses_its_class_default_on_matrices():
    choice = optimizer_choice("sgd", {"lr": 0.1})
    assert choice.options == {"lr": 0.1, "momentum": 0.9, "weight_decay": 0}
    net = _Net()
    net.set_optimizer_choice(choice)
    optimizer = net.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.9


def test_the_choice_changes_only_that_instance_and_stacey_is_not_a_baseline():
    switched, untouched = _Net(), _Net()
    switched.set_optimizer_choice(optimizer_choice("sgd"))
    assert isinstance(switched.configure_optimizers()["optimizer"], torch.optim.SGD)
    assert type(untouched.configure_optimizers()["optimizer"]).__name__ == "Stacey"
    assert "configure_optimizers" not in vars(switched)  # nothing set on the instance but the choice
    with pytest.raises(ValueError, match="not a baseline"):
        optimizer_choice("stacey")
