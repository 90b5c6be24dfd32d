"""Video pipeline benchmark: the time per frame of the dream itself next to what the video pipeline adds
(decode, optical flow + warp + occlusion + smoothing + warp error, the work folder's PNG, encode).

    python bench/bench_video.py [--size 640x480] [--frames 4] [--octaves 2 --steps 3] [--json PATH]

A panning clip is made from a photo (H.264), then dreamed frame by frame exactly as `fastdream video`
does. Prints and writes medians (ms per frame) and ``overhead_percent`` = pipeline / dream x 100.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_clip(path, size, frames, fps=24, step=4, photo=None):
    import av
    import cv2
    import numpy as np

    W, H = size
    img = cv2.imread(str(photo or (REPO / "examples" / "chelsea.jpg")))[..., ::-1]
    big = cv2.resize(img, (W + step * frames + 8, H + 8), interpolation=cv2.INTER_AREA)
    c = av.open(str(path), "w")
    v = c.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = W, H, "yuv420p"
    for i in range(frames):
        f = np.ascontiguousarray(big[4:4 + H, step * i:step * i + W])
        for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    for p in v.encode(None):
        c.mux(p)
    c.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--octaves", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="write the record here")
    args = ap.parse_args(argv)
    import torch

    from fastdream.api import get_backbone, make_config
    from fastdream.bench.kernels import metadata
    from fastdream.convert import resolve_device
    from fastdream.objective_text import build_objective
    from fastdream.video import io as vio
    from fastdream.video.coherence import Coherence, DreamProcessor, to_tensor, to_uint8

    W, H = (int(v) for v in args.size.lower().split("x"))
    device = resolve_device(args.device)
    torch.manual_seed(0)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_video."))
    clip = tmp / "pan.mp4"
    make_clip(clip, (W, H), args.frames)
    cfg, layers = make_config(None, octaves=args.octaves, steps=args.steps)
    bb = get_backbone(None, device)
    proc = DreamProcessor(bb, build_objective(bb, (H, W), layers=layers), cfg)
    coh = Coherence(flow=True, blend=0.5, measure=True)
    t = {k: [] for k in ("decode", "flow", "dream", "png", "encode")}
    writer = vio.VideoWriter(tmp / "out.mp4", W, H, 24)
    prev_in = prev_out = None
    reader = iter(vio.FrameReader(clip))
    for i in range(args.frames):
        t0 = time.perf_counter()
        frame = next(reader)
        t1 = time.perf_counter()
        proc.at_frame(i)
        init, pair = coh.prepare(frame, prev_in, prev_out)
        t2 = time.perf_counter()
        y = proc(to_tensor(init, device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t3 = time.perf_counter()
        out = coh.finish(to_uint8(y))
        coh.record(prev_out, out, pair)
        t4 = time.perf_counter()
        vio.write_png(tmp / f"{i:06d}.png", out)
        t5 = time.perf_counter()
        writer.write(vio.read_png(tmp / f"{i:06d}.png"))
        t6 = time.perf_counter()
        t["decode"].append(t1 - t0)
        t["flow"].append((t2 - t1) + (t4 - t3))
        t["dream"].append(t3 - t2)
        t["png"].append(t5 - t4)
        t["encode"].append(t6 - t5)
        prev_in, prev_out = frame, out
        print(f"frame {i}: dream {1e3 * (t3 - t2):.0f} ms, pipeline {1e3 * ((t2 - t0) + (t6 - t3)):.0f} ms",
              file=sys.stderr)
    t0 = time.perf_counter()
    writer.close()
    t["encode"][-1] += time.perf_counter() - t0
    # the first frame has no flow; medians over the frames that have it
    ms = {k: round(1e3 * statistics.median(v[1:] if len(v) > 1 else v), 2) for k, v in t.items()}
    pipeline = ms["decode"] + ms["flow"] + ms["png"] + ms["encode"]
    rec = {"bench": "video", "size": [W, H], "frames": args.frames, "device": str(device),
           "dream": {"octaves": args.octaves, "steps": args.steps},
           "ms_per_frame": ms, "pipeline_ms": round(pipeline, 2),
           "overhead_percent": round(100 * pipeline / ms["dream"], 2),
           "warp_error": round(statistics.mean(coh.warp_errors), 6) if coh.warp_errors else None}
    print(json.dumps(rec, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps([rec, {"metadata": metadata()}], indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
