"""A sheet of held-out photos from a `distill eval --save DIR` folder: one row per photo, columns input,
teacher, (teacher with another seed,) (other filters,) filter.

    python bench/filter_sheet.py DIR -o docs/img/distill_heldout.jpg [--names a,b,c] [--width 320]
    python bench/filter_sheet.py DIR --other-filter DIR2 --no-seeds -o sheet.jpg   # DIR2's filter beside DIR's
"""
from __future__ import annotations

import argparse
import pathlib
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--names", help="comma-separated photo stems, in order (default: all)")
    p.add_argument("--width", type=int, default=320, help="width of each cell")
    p.add_argument("--other-filter", action="append", default=[], metavar="DIR",
                   help="another `distill eval --save` folder of the same photos: its filter's column comes "
                        "before DIR's (repeatable)")
    p.add_argument("--no-seeds", action="store_true", help="leave out the teacher's other seeds")
    args = p.parse_args(argv)
    from PIL import Image

    d = pathlib.Path(args.folder)
    stems = args.names.split(",") if args.names else sorted(f.name[:-len("_input.png")] for f in d.glob("*_input.png"))
    rows = []
    for s in stems:
        cells = [d / f"{s}_input.png", d / f"{s}_teacher.png"]
        if not args.no_seeds:
            cells += sorted(d.glob(f"{s}_teacher_seed*.png"))
        cells += [pathlib.Path(o) / f"{s}_filter.png" for o in args.other_filter]
        cells.append(d / f"{s}_filter.png")
        rows.append([Image.open(c).convert("RGB") for c in cells])
    w = args.width
    scaled = [[im.resize((w, round(im.height * w / im.width)), Image.LANCZOS) for im in r] for r in rows]
    cols = max(len(r) for r in scaled)
    H = sum(r[0].height for r in scaled) + 4 * (len(scaled) - 1)
    sheet = Image.new("RGB", (cols * w + 4 * (cols - 1), H), "white")
    y = 0
    for r in scaled:
        for i, im in enumerate(r):
            sheet.paste(im, (i * (w + 4), y))
        y += r[0].height + 4
    sheet.save(args.output, quality=88)
    print(f"{args.output}: {len(rows)} photos x {cols} columns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
