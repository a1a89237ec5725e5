#!/usr/bin/env bash
# The GPU check of docs/devices.md, run from the repository root on a machine with one CUDA GPU
# and a python3 that has torch with CUDA (anpyc itself from src/, nothing installed):
#   OUT=device-out ANPYC_DATA=DIR bash docs/scripts/device_check.sh
# DIR holds mnist/ (the four idx .gz files, as `anpyc data fetch mnist` leaves them).
# 1. tests/test_device.py on CUDA (every method, exact resume, a one-process nccl group, CNN,
#    VAE, GAN); 2. pmnist10's ANPyC seed 0 (its committed config) on the GPU, then on one CPU thread.
set -o pipefail
OUT=${OUT:-device-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 ANPYC_DATA=${ANPYC_DATA:-$PWD/.devdata} CI=true
python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0), torch.backends.cpu.get_cpu_capability())" 2>&1 | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$OUT/env.txt"
nproc | tee -a "$OUT/env.txt"
ANPYC_TEST_DEVICE=cuda timeout 330 python3 -m pytest tests/test_device.py -p no:cacheprovider -q -rfE --durations=8 2>&1 \
  | tee "$OUT/pytest.log" | tail -60
cfg=docs/benchmarks/pmnist10/runs/anpyc/seed_0/config.yaml
for d in cuda cpu; do
  timeout 150 python3 -m anpyc run --config $cfg --device $d --threads 1 --quiet --no-report --overwrite \
    --out "$OUT/runs/pmnist10-anpyc-$d" 2>&1 | tail -5
  python3 -c "import json; m = json.load(open('$OUT/runs/pmnist10-anpyc-$d/metrics.json')); print('$d', m['avg_acc'], m['time_s'], m['train_time_s'], m['eval_time_s'])"
done
