#!/usr/bin/env bash
# Regenerates the README gallery (docs/img/dream_*.jpg, distill_chelsea.jpg) with the installed fastdream, from the repo root.
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

# The shipped dream filter (docs/distill.md): a held-out photo, input | iterative teacher | filter
$FD distill eval examples/chelsea.jpg --size 320 --save "$tmp/eval"
python - "$tmp/eval" "$out/distill_chelsea.jpg" <<'PY'
import sys
from PIL import Image
d, out = sys.argv[1], sys.argv[2]
row = [Image.open(f"{d}/chelsea_{k}.png").convert("RGB") for k in ("input", "teacher", "filter")]
w, h = row[0].size
sheet = Image.new("RGB", (3 * w + 8, h), "white")
for i, im in enumerate(row):
    sheet.paste(im, (i * (w + 4), 0))
sheet.save(out, quality=88)
PY
rm -rf "$tmp"
