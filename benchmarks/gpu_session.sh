#!/usr/bin/env bash
# The device checks, as one short call on a CUDA machine (see README "Results"): the fused CUDA path
# against the plain path (and its compile count under a scheduler), the FSDP2 and special-case tests on
# the GPU's host, then the step-speed benchmark with AdamW(fused=True), with and without inductor's
# combo kernels. Writes its logs to $OUT (or ./gpu_out).
set -u
out=${OUT:-gpu_out}; mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 240 python3 -m pytest -q -p no:cacheprovider -m gpu tests/optim 2>&1 | tail -4 | tee "$out/gpu_tests.txt"
timeout 240 python3 benchmarks/step_speed.py --device cuda --repetitions 40 --warmup 5 --output "$out/step_speed_cuda.md" 2>&1 \
    | grep -v "^W1\|^I1" | tee "$out/step_speed_cuda.txt"
timeout 120 python3 benchmarks/step_speed.py --device cuda --repetitions 40 --warmup 5 --no-scaling \
    --cuda-compile-options '{"combo_kernels": false}' --output "$out/step_speed_cuda_no_combo.md" 2>&1 | grep -v "^W1\|^I1" | tee "$out/step_speed_cuda_no_combo.txt"
