"""Distributed training, gradient accumulation, gradient clipping and bf16-mixed with Stacey (docs/lightning.md)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_train import GLOBAL_BATCH, SAMPLES, saved_state, train

SCRIPT = Path(__file__).parents[1] / "helpers" / "ddp_train.py"


def _flat_state(state):
    """(name, tensor) pairs of the parameters and of every optimizer state tensor (z, m per parameter)."""
    pairs = list(state["params"].items())
    for index, entry in state["optimizer"]["state"].items():
        pairs += [(f"state[{index}].{key}", value) for key, value in entry.items() if torch.is_tensor(value)]
    return pairs


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree_and_match_one_process(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1))
    single = saved_state(*train(devices=1))
    steps = 2 * SAMPLES // GLOBAL_BATCH
    assert rank0["global_step"] == rank1["global_step"] == single["global_step"] == steps
    assert rank0["optimizer"]["param_groups"] == rank1["optimizer"]["param_groups"]
    pairs = list(zip(_flat_state(rank0), _flat_state(rank1), _flat_state(single)))
    assert len(pairs) == 4 + 2 * 4  # 4 parameters, z and m for each
    for (name, tensor0), (_, tensor1), (_, reference) in pairs:
        assert torch.equal(tensor0, tensor1), name
        torch.testing.assert_close(tensor0, reference, rtol=1e-4, atol=1e-5, msg=name)


def test_gradient_accumulation_matches_the_large_batch():
    accumulated, trainer = train(accumulate_grad_batches=2)
    large, _ = train()
    assert trainer.global_step == 2 * SAMPLES // GLOBAL_BATCH  # steps count optimizer steps, not batches
    for (name, expected), actual in zip(large.state_dict().items(), accumulated.state_dict().values()):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=name)


def test_gradient_clipping_clips_the_gradient_stacey_steps_with(monkeypatch):
    import ddp_train

    # p = 2, tau = 0 and beta1 = 0 make the first step x - lr * g: its l2 norm is lr * ||clipped g||_2.
    monkeypatch.setattr(ddp_train, "CONFIG", {"p": 2.0, "tau": 0.0, "lr": 0.1, "betas": [0.0, 0.99]})
    initial, _ = train(max_epochs=0)
    before = [param.detach().clone() for param in initial.parameters()]
    clipped, _ = train(max_steps=1, gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
    step = torch.cat([(after.detach() - start).flatten() for after, start in zip(clipped.parameters(), before)])
    assert torch.linalg.vector_norm(step).item() == pytest.approx(0.1 * 1e-3, rel=1e-3)


def test_bf16_mixed_keeps_float32_parameters_and_state():
    mixed, trainer = train(precision="bf16-mixed")
    full, _ = train()
    state = trainer.optimizers[0].state
    assert all(param.dtype == torch.float32 for param in mixed.parameters())
    assert all(state[param][key].dtype == torch.float32 for param in mixed.parameters() for key in ("z", "m"))
    differences = [(a - b).abs().max().item() for a, b in zip(mixed.parameters(), full.parameters())]
    assert 0 < max(differences) < 0.05  # the forward ran in bfloat16, and training still agrees closely
