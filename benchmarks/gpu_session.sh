#!/usr/bin/env bash
# Every claim that needs a GPU, as one call of under 10 minutes on a CUDA machine (README "Results"):
#   1. the fused CUDA kernel equals the plain path (pytest -m gpu tests/optim), and the whole-list kernel
#      compiles once per parameter list while an lr scheduler changes lr every step (compile_count.md);
#   2. step time and peak memory of the fused CUDA kernel against AdamW(fused=True), on ResNet-18 and on
#      a 110M-parameter LLaMA-style transformer (step_speed_cuda_resnet18.md, step_speed_cuda_transformer.md);
#   3. a short study with one trial per GPU, as many trials and workers as there are GPUs (session.log).
# Each part has its own time limit (they add up to 565 s: run it with the device tool's 600) and a failed part does not stop the others. Six
# files go to $OUT (or ./gpu_out; the device tool brings back at most 8): the tables above, the study's
# best.yaml (study_best.yaml), every part's output (session.log) and summary.txt, whose last line says
# which parts failed.
#
#   bash benchmarks/gpu_session.sh             # on the GPU machine, from the repository root
#   DRY_RUN=1 bash benchmarks/gpu_session.sh   # here, on the CPU: the same Python parts with tiny sizes
#
# The study needs Optuna, which the GPU image lacks: make its wheels here with `pip download --only-binary=:all:
# --python-version 3.12 --platform manylinux2014_x86_64 -d gpu_wheels optuna`, add gpu_wheels to
# .git/info/exclude and name it in the run's carry; without them the study part is skipped and says so.
set -u
out=${OUT:-gpu_out}; mkdir -p "$out"; : > "$out/summary.txt"; : > "$out/session.log"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
failed=()
part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to session.log, remember a failure
    local name=$1 seconds=$2; shift 2
    echo "== $name (limit ${seconds} s)" | tee -a "$out/summary.txt" >> "$out/session.log"
    local start=$SECONDS
    timeout "$seconds" "$@" > "$out/part.log" 2>&1
    local rc=$?
    grep -v "^[WI]1" "$out/part.log" | tee -a "$out/session.log" | tail -25
    rm -f "$out/part.log"
    echo "   $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    [ "$rc" -eq 0 ] || failed+=("$name")
}

if [ -n "${DRY_RUN:-}" ]; then
    device=cpu; accelerator=cpu; gpus=1
    speed_args=(--device cpu --smoke --threads 1)
    transformer_args=(--device cpu --smoke --threads 1)
    compile_steps=3; study_epochs=1
else
    device=cuda; accelerator=gpu
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/summary.txt"
    gpus=$($python -c "import torch; print(torch.cuda.device_count())")
    speed_args=(--device cuda --repetitions 40 --warmup 5 --no-scaling --p 3,4.5)
    transformer_args=(--device cuda --model transformer --repetitions 20 --warmup 3 --no-scaling --p 3,4.5 --no-slow-paths)
    compile_steps=50; study_epochs=2
fi
$python -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), 'GPUs', torch.cuda.device_count())" \
    | tee -a "$out/summary.txt"

# 1. Equality on the GPU (skipped by pytest without CUDA), then the compile count under a scheduler.
if [ -z "${DRY_RUN:-}" ]; then
    part gpu_tests 150 $python -m pytest -q -p no:cacheprovider -m gpu tests/optim
fi
part compile_count 45 $python - "$device" "$compile_steps" "$out/compile_count.md" <<'EOF'
import sys
import torch
from stacey_lightning import Stacey

device, steps, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch._dynamo.utils.counters.clear()
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).to(device)
optimizer = Stacey(model.parameters(), p=3.0, fused=True)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps + 1)
graphs, lrs = [], []
for step in range(steps):
    inputs = torch.randn(32, 64, device=device)
    loss = model(inputs).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    lrs.append(optimizer.param_groups[0]["lr"])
    scheduler.step()
    graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
text = (
    f"# Compile count of the fused step under OneCycleLR ({device})\n\n"
    f"Graphs compiled after the first step: {graphs[0]}; after {steps} steps, lr changing every step: "
    f"{graphs[-1]} (lr took {len(set(lrs))} values, from {min(lrs):.3g} to {max(lrs):.3g}).\n"
)
print(text)
open(path, "w").write(text)
sys.exit(0 if graphs[-1] == graphs[0] else 1)
EOF

# 2. Step time and peak memory against AdamW(fused=True).
part step_speed_resnet18 140 $python benchmarks/step_speed.py "${speed_args[@]}" \
    --output "$out/step_speed_${device}_resnet18.md"
part step_speed_transformer 140 $python benchmarks/step_speed.py "${transformer_args[@]}" \
    --output "$out/step_speed_${device}_transformer.md"

# 3. A short study, one trial per GPU.
if ! $python -c "import optuna" 2>/dev/null && [ -d gpu_wheels ]; then
    $python -m pip install -q --no-index --find-links gpu_wheels optuna >> "$out/session.log" 2>&1
fi
if $python -c "import optuna" 2>/dev/null; then
    rm -rf "$out/study"
    part study 90 $python -m stacey_lightning tune --task digits --n-trials "$gpus" --workers "$gpus" --devices 1 \
        --accelerator "$accelerator" --max-epochs "$study_epochs" --no-confirm --output "$out/study"
    [ -f "$out/study/best.yaml" ] && cp "$out/study/best.yaml" "$out/study_best.yaml"
    rm -rf "$out/study"  # runs and database: too many files to bring back; session.log holds the trials' table
else
    echo "== study skipped: optuna is not installed and no gpu_wheels/ folder was carried" | tee -a "$out/summary.txt"
    failed+=(study)
fi

echo "failed parts: ${failed[*]:-none}" | tee -a "$out/summary.txt"
[ ${#failed[@]} -eq 0 ]
