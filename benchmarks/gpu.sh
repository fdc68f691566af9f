#!/usr/bin/env bash
# One GPU session's measurements, in one call (the lent GPU machine has no network and ~10 minutes).
#
#   bash benchmarks/gpu.sh OUT_DIR [TRAIN_SECONDS] [PARTS]
#
# PARTS (default "et equiformer gatr ed train"; also "graphtest", "md", "polymd"): which measurements to run.
#
# Expects, beside the tracked tree, a folder .gpu/ (ignored through .git/info/exclude) holding
#   .gpu/whl/           wheels missing on the machine (ase, e3nn 0.6) installed into /tmp/site
#   .gpu/data/rmd17/    aspirin_train.xyz, aspirin_test.xyz (copies of ../shared/data/rmd17)
#   .gpu/ref/           reference work trees: equiformer, gatr, shims, stubs, deps_e3nn044
#   .gpu/models/        eqt checkpoints for the MD timing (run 1's model_et.pt, model_equiformer.pt) and
#                       one aspirin frame (aspirin.xyz)
#   .gpu/polyget_md/    (part polymd) the PolyGET models (force-only model.pt, joint joint.pt) and the study's
#                       systems.xyz (starting structures, no RDKit needed there: `eqt polyget-md
#                       configs/polyget/md.yaml --stage md --set length_ps=0.001 --out /tmp/pmd` writes
#                       them); md_state_model.pt / md_state_joint.pt too, to continue a run
#   .gpu/tmd/           torchmd-net 3.1.0's package with its Warp neighbour op swapped for a torch one
#                       (warp-lang is 392 MB and cannot travel; same contract, same energies on CPU)
# Each step has its own time limit; all logs go to OUT_DIR/all.log (plus the JSON results and the two
# trained checkpoints: few files, as the machine returns at most 8), so one failure costs only itself.
# Order: speed benchmarks first (idle GPU), then ET and Equiformer training side by side for
# TRAIN_SECONDS each on rMD17 aspirin (950/50), then both scored on aspirin_test.xyz on the GPU.
set -u
OUT=${1:?usage: gpu.sh OUT_DIR [TRAIN_SECONDS]}
TRAIN=${2:-150}
PARTS=" ${3:-et equiformer gatr ed train} "
want() { [[ $PARTS == *" $1 "* ]]; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 EQT_SHARED_DATA=$PWD/.gpu/data
step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "/tmp/$name.log" 2>&1
    local rc=$?
    { echo "===== $name: rc $rc in $((SECONDS - t0)) s"; cat "/tmp/$name.log"; } >> "$OUT/all.log"
    echo "== $name: rc $rc in $((SECONDS - t0)) s"
    tail -n 25 "/tmp/$name.log"
}

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, e3nn, ase; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'ase', ase.__version__, torch.cuda.get_device_name())"
want graphtest && step graph_test 60 python3 -m pytest -q -p no:cacheprovider tests/physics/test_graphed.py

want et && step et_speed 110 env PYTHONPATH=$PWD/.gpu/tmd:$PYTHONPATH python3 benchmarks/bench_et_speed.py --device cuda \
    --batches 1 8 64 --repeats 5 --calls 10 --json "$OUT/et_speed_cuda.json"
want equiformer && step equiformer_speed 150 python3 benchmarks/bench_equiformer_speed.py --device cuda --batches 1 8 64 \
    --warmup 3 --repeats 10 --reference .gpu/ref/equiformer --reference-shims .gpu/ref/shims \
    --reference-e3nn .gpu/ref/deps_e3nn044 --json "$OUT/equiformer_speed_cuda.json"
want gatr && step gatr_speed 90 python3 benchmarks/bench_gatr_speed.py --device cuda --repeats 10 --warmup 3 \
    --reference .gpu/ref/gatr --reference-deps .gpu/ref/deps --xformers-stub .gpu/ref/stubs --json "$OUT/gatr_speed_cuda.json"
want gatr && step gatr_speed_b1024 90 python3 benchmarks/bench_gatr_speed.py --device cuda --batch 1024 --repeats 10 \
    --warmup 3 --reference .gpu/ref/gatr --reference-deps .gpu/ref/deps --xformers-stub .gpu/ref/stubs \
    --json "$OUT/gatr_speed_cuda_b1024.json"
want ed && step slmc_ed 40 python3 -c "
from eqt.physics.spin_fermion import benchmark_free_energy as b
for L in (6, 8):
    for dev in ('cpu', 'cuda'):
        r = b(L=L, batch_sizes=(1, 16, 64, 256), min_time=0.5, device=dev)
        print(f'L={L} {dev}: ' + ', '.join(f'batch {k}: {v:.0f}/s' for k, v in r.items()))
"

want md && step md_speed_et 150 python3 benchmarks/bench_md_speed.py .gpu/models/model_et.pt --device cuda \
    --atoms 302 1001 3002 --structure .gpu/models/aspirin.xyz --calls 20 --steps 100 --json "$OUT/md_speed_et.json"
want md && step md_speed_equiformer 120 python3 benchmarks/bench_md_speed.py .gpu/models/model_equiformer.pt \
    --device cuda --atoms 302 1001 --structure .gpu/models/aspirin.xyz --calls 10 --steps 50 \
    --json "$OUT/md_speed_equiformer.json"
if want polymd; then  # PolyGET MD robustness on the GPU: batched replicas, one CUDA graph replay per step
    # both models (force-only model.pt, joint joint.pt), 20 trajectories each (300 + 500 K in one batch),
    # up to 100 ps; each bounded by max_time, resumable from the md_state.pt that comes back
    for m in model joint; do
        mkdir -p "$OUT/polyget_md_$m" && cp .gpu/polyget_md/systems.xyz "$OUT/polyget_md_$m/"
        cp .gpu/polyget_md/md_state_$m.pt "$OUT/polyget_md_$m/md_state.pt" 2>/dev/null
        step polyget_md_$m 260 python3 -m eqt.cli polyget-md configs/polyget/md.yaml --stage md --set device=cuda \
            --set graphed=true --set model=.gpu/polyget_md/$m.pt --set "out_dir=$OUT/polyget_md_$m" \
            --set length_ps=100 --set max_time=00:03:45
    done
fi
want train || { echo "== done"; exit 0; }
# training: both at once on the one GPU, the same wall-clock budget
T=$(printf '00:00:%02d:%02d' $((TRAIN / 60)) $((TRAIN % 60)))
D=.gpu/data/rmd17
for m in et equiformer; do
    ( timeout $((TRAIN + 90)) python3 -m eqt.cli train configs/$m-md17.yaml --out /tmp/runs/$m \
        --set data=$D/aspirin_train.xyz --set test_size=0 --set max_time=$T --set progress_bar=false > "/tmp/train_$m.log" 2>&1;
      echo "train $m rc $?" >> "/tmp/train_$m.log" ) &
done
wait
for m in et equiformer; do
    { echo "===== train_$m"; cat "/tmp/train_$m.log"; } >> "$OUT/all.log"
    tail -n 5 "/tmp/train_$m.log"
    step test_$m 90 python3 -m eqt.cli test /tmp/runs/$m/model.pt $D/aspirin_test.xyz --device cuda --batch-size 50
    cp /tmp/runs/$m/model.pt "$OUT/model_$m.pt" 2>/dev/null
done
echo "== done"
