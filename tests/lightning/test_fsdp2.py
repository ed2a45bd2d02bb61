"""FSDP2 (Lightning's ModelParallelStrategy, fully_shard) with Stacey's default path, 2 CPU processes on gloo:
it trains, matches one process at the same global batch, keeps the kinds of the unsharded model,
StaceyMonitor's norms cover whole tensors, and it resumes exactly from Lightning's distributed checkpoint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fsdp_train import SPECTRAL, fit, full_state, groups, monitored

SCRIPT = Path(__file__).parents[1] / "helpers" / "fsdp_train.py"


@pytest.mark.slow
def test_fsdp2_default_path_matches_one_process_and_resumes_exactly(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = torch.load(tmp_path / "fsdp2.pt", weights_only=False)
    # float32 on the CPU: the C kernel steps both groups, p = 3 (rsqrt) and the matrices' p = 4.5 (power)
    assert sharded["fused"]["c_kernel"] == ["power", "rsqrt"] and sharded["fused"]["disabled_reason"] is None
    module, single = fit(1, 2, tmp_path / "single")
    reference = full_state(module, single)
    assert sharded["steps"] == single.global_step == 8
    assert sharded["uninterrupted"].keys() == reference.keys() and len(reference) == 6 * 3  # params, z, m
    for name, expected in reference.items():
        torch.testing.assert_close(sharded["uninterrupted"][name], expected, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(sharded["resumed"][name], sharded["uninterrupted"][name]), name
    for rank in (0, 1):
        assert json.loads((tmp_path / f"groups-rank{rank}.json").read_text()) == groups(single)
        geometry = json.loads((tmp_path / f"monitor-rank{rank}.json").read_text())  # norms of whole tensors
        assert geometry.keys() == monitored(single).keys() and len(geometry) == 8
        for name, value in monitored(single).items():
            assert geometry[name] == pytest.approx(value, rel=1e-4), name
    # The spectral direction of a row-sharded matrix is the whole matrix's (here of each of the three maps it
    # stacks, the second split between the processes), and Adam's steps the shards: the sharded run equals one
    # process (head, hidden matrix, vectors).
    spectral = torch.load(tmp_path / "fsdp2_spectral.pt", weights_only=False)
    module, single = fit(1, 2, tmp_path / "single-spectral", config=SPECTRAL, stacked=3)
    assert spectral["groups"] == groups(single) and [g["norm"] for g in groups(single)] == ["adam", "spectral", "adam"]
    assert [g["blocks"] for g in groups(single)] == [1, [3], 1]
    assert "adam" in spectral["c_kernel"]  # Adam's norm stepped the shards in the C kernel
    for name, expected in full_state(module, single).items():
        torch.testing.assert_close(spectral["uninterrupted"][name], expected, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(spectral["resumed"][name], spectral["uninterrupted"][name]), name
