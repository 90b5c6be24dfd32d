"""Benchmark style transfer: seconds, peak RSS and the style-loss ratio for one content/style pair.

    PYTHONPATH=. python bench/bench_style.py --size 2048 --iters 40,10,4,2 --json out.json

Inputs: a content photo (default tests/data/astronaut_128.jpg upscaled, or --content PATH) and a
procedural style (``fastdream.stylize.samples``), fixed seed. One run (style transfer is minutes long on
a CPU; repeat the command for spread)."""
from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from fastdream.backbones import load_backbone
    from fastdream.imageio import load_image
    from fastdream.report import peak_rss_mb
    from fastdream.stylize import samples
    from fastdream.stylize.transfer import StyleConfig, StyleTransfer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content", default=str(REPO / "tests" / "data" / "astronaut_128.jpg"))
    p.add_argument("--style", choices=["swirls", "brush_strokes", "stained_glass"], default="swirls")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iters", default="120")
    p.add_argument("--optimizer", default="lbfgs")
    p.add_argument("--max-tile-pixels", type=int, default=1024 * 1024)
    p.add_argument("--json", help="write the figures here")
    a = p.parse_args(argv)
    iters = tuple(int(v) for v in a.iters.split(","))
    content, _ = load_image(a.content)
    style = getattr(samples, a.style)(512, seed=0)
    cfg = StyleConfig(size=a.size, iters=iters[0] if len(iters) == 1 else iters, optimizer=a.optimizer,
                      max_tile_pixels=a.max_tile_pixels)
    bb = load_backbone()
    t0 = time.perf_counter()
    out, st = StyleTransfer(bb, cfg).run(content, [(style, 1.0)])
    seconds = time.perf_counter() - t0
    res = {"size": list(out.shape[-2:]), "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
           "style_loss_start": st.style_loss_start, "style_loss_end": st.style_loss_end,
           "style_loss_ratio": st.style_loss_end / st.style_loss_start, "content_loss_end": st.content_loss_end,
           "scales": st.scale_sizes, "iters": st.iters, "tiles": st.tiles,
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}}
    print(json.dumps(res, indent=2))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
