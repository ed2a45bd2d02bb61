"""The peers a user would pick today: ``muon`` (torch.optim.Muon on hidden matrices, AdamW on the rest) and
``schedulefree`` (evaluated and saved at its averaged point), through the same door as every baseline."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from modes import RecordModes
from schedulefree import AdamWScheduleFree

from stacey_lightning import StaceyConfig, StaceyMixin
from stacey_lightning.baselines import optimizer_choice, optimizer_class
from stacey_lightning.optim.muon_with_adamw import MuonWithAdamW
from stacey_lightning.tasks.digits import make_digits

TRAINER = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, limit_train_batches=6, limit_val_batches=2)  # fmt: skip


class _Language(StaceyMixin, torch.nn.Module):
    """An embedding, a hidden matrix, a norm and an output head: every kind Muon's convention names."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(11, 8)
        self.hidden = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 11)


def _routes(optimizer: MuonWithAdamW) -> dict[str, bool]:
    return {group["name"]: group["muon"] for group in optimizer.param_groups}


def test_muon_takes_the_hidden_matrices_and_adamw_the_embedding_head_and_vectors():
    net = _Language()
    net.set_optimizer_choice(optimizer_choice("muon"))
    optimizer = net.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, MuonWithAdamW)
    assert _routes(optimizer) == {"head": False, "matrix": True, "embedding": False, "vector": False}
    matrix = next(group for group in optimizer.param_groups if group["name"] == "matrix")
    assert matrix["params"] == [net.hidden.weight]
    # One lr and weight decay for both halves (Moonshot's recipe); vectors without decay as for every baseline.
    assert {group["lr"] for group in optimizer.param_groups} == {3e-3}
    assert {g["name"]: g["weight_decay"] for g in optimizer.param_groups}["vector"] == 0.0


def test_muon_with_adamw_steps_each_half_exactly_as_its_torch_optimizer():
    torch.manual_seed(0)
    net = _Language()
    reference = copy.deepcopy(net)
    net.set_optimizer_choice(optimizer_choice("muon", {"lr": 1e-2, "weight_decay": 0.1}))
    optimizer = net.configure_optimizers()["optimizer"]
    muon = torch.optim.Muon([reference.hidden.weight], lr=1e-2, weight_decay=0.1, momentum=0.95, nesterov=True,
                            adjust_lr_fn="match_rms_adamw")  # fmt: skip
    vectors = [p for p in reference.parameters() if p.ndim == 1]
    adamw = torch.optim.AdamW(
        [{"params": [reference.embedding.weight, reference.head.weight]}, {"params": vectors, "weight_decay": 0.0}],
        lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95),
    )  # fmt: skip
    tokens = torch.randint(0, 11, (16,))
    for module, optimizers in ((net, [optimizer]), (reference, [muon, adamw])):
        for _ in range(4):
            for opt in optimizers:
                opt.zero_grad()
            module.head(module.norm(module.hidden(module.embedding(tokens)))).logsumexp(-1).mean().backward()
            for opt in optimizers:
                opt.step()
    for (name, param), reference_param in zip(net.named_parameters(), reference.parameters()):
        assert torch.equal(param, reference_param), name


def test_a_muon_state_dict_resumes_bit_identically():
    torch.manual_seed(0)
    net = _Language()
    net.set_optimizer_choice(optimizer_choice("muon"))
    optimizer = net.configure_optimizers()["optimizer"]
    tokens = torch.randint(0, 11, (16,))

    def train(module, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            module.head(module.hidden(module.embedding(tokens))).logsumexp(-1).mean().backward()
            opt.step()

    train(net, optimizer, 2)
    resumed_net = copy.deepcopy(net)
    resumed = resumed_net.configure_optimizers()["optimizer"]
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    train(net, optimizer, 2)
    train(resumed_net, resumed, 2)
    for a, b in zip(net.parameters(), resumed_net.parameters()):
        assert torch.equal(a, b)


def test_bare_torch_muon_is_refused_with_a_pointer_to_the_muon_baseline():
    with pytest.raises(ValueError, match="2-D parameters only.*use 'muon'"):
        optimizer_class("torch.optim.Muon")


def test_schedulefree_is_evaluated_saved_and_left_at_its_averaged_point(tmp_path):
    module, data = make_digits(seed=0, hidden=16)
    module.set_optimizer_choice(optimizer_choice("schedulefree"))
    record = RecordModes()
    trainer = pl.Trainer(max_epochs=2, callbacks=[record], **TRAINER)
    trainer.fit(module, data)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, AdamWScheduleFree)
    seen = record.seen
    assert seen["training"] and all(seen["training"]) and not any(seen["validation"])
    assert not optimizer.param_groups[0]["train_mode"]  # fit leaves the module at x, the average
    averaged = {name: p.detach().clone() for name, p in module.named_parameters()}
    # A checkpoint written outside validation holds the averaged point too.
    optimizer.train()
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    assert optimizer.param_groups[0]["train_mode"]  # put back as it was
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    for name, value in averaged.items():
        assert torch.equal(saved["state_dict"][name], value)
    assert not saved["optimizer_states"][0]["param_groups"][0]["train_mode"]


def _fit_digits(kinds: dict) -> tuple[pl.LightningModule, pl.Trainer]:
    module, data = make_digits(seed=0, hidden=16, foreach=True)
    module.set_stacey_config(StaceyConfig(lr=3e-3, p=float("inf"), tau=0.0, kinds=kinds))
    trainer = pl.Trainer(max_epochs=1, **TRAINER)
    trainer.fit(module, data)
    return module, trainer


def test_stacey_spectral_kind_trains_through_the_mixin_and_leaves_the_head_to_lp():
    start, _ = make_digits(seed=0, hidden=16)
    spectral, trainer = _fit_digits({"matrix": {"norm": "spectral"}})
    norms = {group["name"]: group["norm"] for group in trainer.optimizers[0].param_groups}
    assert norms == {"head": "lp", "matrix": "spectral", "vector": "lp"}  # the fit's optimizer, not a fresh one
    assert not torch.equal(spectral.net[0].weight, start.net[0].weight)  # tau = 0: only its own steps move it
    # The spectral steps are not the l_p steps the same fit takes without the override: the norm was used.
    sign_like, _ = _fit_digits({})
    assert not torch.equal(spectral.net[0].weight, sign_like.net[0].weight)
