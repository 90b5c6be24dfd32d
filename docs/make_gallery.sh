#!/usr/bin/env bash
# Regenerates the README gallery (docs/img/dream_*.jpg) with the installed fastdream, from the repo root.
set -euo pipefail
out=docs/img
tmp=$(mktemp -d)
fastdream dream examples/chelsea.jpg -o "$tmp/classic.png" --preset classic --seed 1
fastdream dream examples/astronaut.jpg -o "$tmp/deep.png" --preset deep --seed 1
fastdream dream examples/motorcycle.jpg -o "$tmp/eyes.png" --preset eyes --seed 1
fastdream dream examples/motorcycle.jpg -o "$tmp/guided.png" --guide examples/chelsea.jpg --guide-layer block10 \
  --steps 12 --step-size 0.015 --seed 1
fastdream dream examples/astronaut.jpg -o "$tmp/masked.png" --class "jellyfish@0.5,0,1,0.5" \
  --class "golden retriever@0,0.55,0.5,1" --steps 14 --step-size 0.015 --seed 1
fastdream sheet examples/chelsea.jpg -o "$tmp/sheet.png" --layers block3,block5,block7,block9,block11,block13 \
  --cell 200 --columns 3 --seed 1
for f in "$tmp"/*.png; do
  python -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=85)" \
    "$f" "$out/dream_$(basename "${f%.png}").jpg"
done
rm -rf "$tmp"
