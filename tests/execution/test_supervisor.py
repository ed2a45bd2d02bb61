"""Worker processes on a machine with GPUs: each gets its own devices through CUDA_VISIBLE_DEVICES."""

import pytest

from stacey_lightning.execution.supervisor import worker_devices


@pytest.mark.parametrize(
    "devices, worker, visible, expected",
    [
        (1, 0, 4, "0"),
        (1, 3, 4, "3"),
        (2, 1, 4, "2,3"),
        (2, 2, 4, None),  # a third pair of GPUs does not exist: the worker keeps what it sees
        (1, 0, 0, None),  # no GPU
        ("auto", 0, 4, None),  # Lightning chooses
    ],
)
def test_each_worker_gets_its_own_gpus(devices, worker, visible, expected):
    assert worker_devices(devices, worker, visible) == expected
