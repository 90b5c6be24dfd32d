"""Benchmark style transfer: seconds, peak RSS and the style-loss ratio for one content/style pair.

    PYTHONPATH=. python bench/bench_style.py --size 2048 --iters 40,10,4,2 --json out.json

Inputs: a content photo (default tests/data/astronaut_128.jpg upscaled, or --content PATH) and a
procedural style (``fastdream.stylize.samples``), fixed seed. One run (style transfer is minutes long on
a CPU; repeat the command for spread)."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)
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
    p.add_argument("--style-size", type=int, default=512, help="the procedural style is drawn this large")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iters", default="120")
    p.add_argument("--optimizer", default="lbfgs")
    p.add_argument("--max-tile-pixels", type=int, default=1024 * 1024)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--save", help="write the result picture here")
    p.add_argument("--trace", action="store_true", help="print the losses of every evaluation")
    a = p.parse_args(argv)
    iters = tuple(int(v) for v in a.iters.split(","))
    content, _ = load_image(a.content)
    style = getattr(samples, a.style)(a.style_size, seed=0)
    cfg = StyleConfig(size=a.size, iters=iters[0] if len(iters) == 1 else iters, optimizer=a.optimizer,
                      max_tile_pixels=a.max_tile_pixels)
    bb = load_backbone()
    engine = StyleTransfer(bb, cfg)
    t0 = time.perf_counter()
    if a.trace:
        evaluate = engine.evaluate

        def traced(x, *args, **kw):
            r = evaluate(x, *args, **kw)
            print(f"{time.perf_counter() - t0:8.1f}s {x.shape[-1]}x{x.shape[-2]} style {r[1]['style']:.4f} "
                  f"content {r[1]['content']:.4f}", file=sys.stderr, flush=True)
            return r
        engine.evaluate = traced
    out, st = engine.run(content, [(style, 1.0)])
    seconds = time.perf_counter() - t0
    if a.save:
        from fastdream.imageio import save_image

        save_image(out, a.save)
    res = {"size": list(out.shape[-2:]), "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
           "style_loss_start": st.style_loss_start, "style_loss_end": st.style_loss_end,
           "style_loss_ratio": st.style_loss_end / st.style_loss_start, "content_loss_end": st.content_loss_end,
           "load_average": [round(v, 2) for v in os.getloadavg()],
           "scales": st.scale_sizes, "iters": st.iters, "tiles": st.tiles,
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}}
    print(json.dumps(res, indent=2))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
