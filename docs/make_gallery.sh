#!/usr/bin/env bash
# Regenerates the README gallery (docs/img/dream_*.jpg) and the filter sheets (distill_heldout.jpg, distill_default_fast.jpg, distill_textures.jpg) with the installed fastdream, from the repo root.
set -euo pipefail
FD=${FASTDREAM:-fastdream}   # e.g. FASTDREAM="python -m fastdream.cli.main" in a development tree
out=docs/img
tmp=$(mktemp -d)
$FD dream examples/chelsea.jpg -o "$tmp/classic.png" --preset classic --seed 1
$FD dream examples/astronaut.jpg -o "$tmp/deep.png" --preset deep --seed 1
$FD dream examples/motorcycle.jpg -o "$tmp/eyes.png" --preset eyes --seed 1
$FD dream examples/motorcycle.jpg -o "$tmp/guided.png" --guide examples/chelsea.jpg --guide-layer block10 \
  --steps 12 --step-size 0.015 --seed 1
$FD dream examples/astronaut.jpg -o "$tmp/masked.png" --class "jellyfish@0.5,0,1,0.5" \
  --class "golden retriever@0,0.55,0.5,1"   # the defaults: objects schedule, BN + TV priors (docs/priors.md)
$FD sheet examples/chelsea.jpg -o "$tmp/sheet.png" --layers block3,block5,block7,block9,block11,block13 \
  --cell 200 --columns 3 --seed 1
for f in "$tmp"/*.png; do
  python -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=85)" \
    "$f" "$out/dream_$(basename "${f%.png}").jpg"
done

# The shipped dream filters (docs/distill.md): held-out photos, input | teacher | teacher seed 1 | filter
# (the photos: python bench/fetch_photos.py --out build/photos)
mkdir -p "$tmp/h4"
cp build/photos/heldout/{gcompris-horse,skimage-chelsea,gcompris-tajMahal,mate-LadyBird}.jpg "$tmp/h4/"
$FD distill eval "$tmp/h4" --model default --size 640x480 --reference-seed 1 --save "$tmp/default"
$FD distill eval "$tmp/h4" --model fast --size 640x480 --save "$tmp/fast"
$FD distill eval "$tmp/h4" --model textures --size 640x480 --save "$tmp/textures"
names=gcompris-horse,skimage-chelsea,gcompris-tajMahal,mate-LadyBird
python bench/filter_sheet.py "$tmp/default" -o "$out/distill_heldout.jpg" --names "$names" --width 320
python bench/filter_sheet.py "$tmp/default" --other-filter "$tmp/fast" --no-seeds -o "$out/distill_default_fast.jpg" \
  --names skimage-chelsea,mate-LadyBird,gcompris-tajMahal --width 320
python bench/filter_sheet.py "$tmp/textures" -o "$out/distill_textures.jpg" --names "$names" --width 320
rm -rf "$tmp"
