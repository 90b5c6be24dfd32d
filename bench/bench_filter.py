"""Benchmark a dream filter (ONNX Runtime) against its iterative teacher and feed-forward baselines.

    python bench/bench_filter.py                        # shipped filter, 640x480, 2 threads
    python bench/bench_filter.py --json bench/results/filter.json --teacher-runs 1
    python bench/bench_filter.py --fidelity build/photos/heldout --clip --json bench/results/cpu-2core-filter.json

Speed: the filter, then in the same run the fast-style-transfer network of Johnson et al. in its
*styletransfer-lite* width (16/32/64 channels) and its published width (32/64/128), exported to ONNX
the same way (``fastdream.bench.baselines.StyleTransferNet``), interleaved run by run so that both see
the same load. ``--fidelity DIR``: ``fastdream distill eval`` on the held-out photos in DIR at the
size (EfficientNet-Lite2 ratios against the teacher, with a second teacher seed as the scale; see
``fastdream.distill.evaluate``). ``--clip``: temporal stability: a panning clip made from a held-out
photo, dreamed by ``fastdream video --filter`` and by the iterative ``fastdream video`` (with its
coherence), and the mean warp error of each (the previous output warped by the optical flow against
the current one).

The input is a real photo (examples/chelsea.jpg, resized to the size): the teacher's dream of noise
is not typical. The filter: warm-up runs, then ``--runs`` timed runs (median, min, p90). The teacher:
``--teacher-runs`` full dreams with the filter's teacher parameters (from its metadata). On a shared
machine the absolute times move with the load (the 1-minute load average is recorded); the
teacher/filter ratio, measured in the same conditions, moves less.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys

import fastdream

fastdream.configure_process()  # before torch, as the CLI does (fastdream.process)
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def photo(size, path=REPO / "examples" / "chelsea.jpg"):
    """The benchmark input: ``[1, 3, H, W]`` float32, a photo resized and centre-cropped to ``size`` (W, H)."""
    from fastdream.distill.evaluate import resize_and_crop
    from fastdream.imageio import load_image

    return resize_and_crop(load_image(path)[0], size)


def machine():
    import onnxruntime as ort
    import torch

    from fastdream.bench.kernels import cpu_model

    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0], "onnxruntime": ort.__version__, "torch": torch.__version__,
            "providers": ort.get_available_providers()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="filter .onnx or a shipped name (default: the shipped filter as `fastdream filter` "
                                   "runs it: default-int8 on the CPU, default on CUDA)")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=[640, 480])
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--teacher-runs", type=int, default=1, help="iterative teacher dreams to time (0: skip)")
    p.add_argument("--teacher-threads", type=int, help="torch threads for the teacher (default: torch's)")
    p.add_argument("--baselines", default="16,32", help="StyleTransferNet widths to time beside the filter ('' none)")
    p.add_argument("--fidelity", metavar="DIR", help="judge the filter against its teacher on the photos in DIR")
    p.add_argument("--refine", type=int, default=0, metavar="K",
                   help="also time the filter finished by K teacher steps at full size (`fastdream filter --refine`), "
                        "beside the teacher, and judge that in --fidelity")
    p.add_argument("--reference-seed", type=int, default=1, help="the teacher seed of the fidelity scale")
    p.add_argument("--clip", action="store_true", help="warp error of video --filter next to the iterative video")
    p.add_argument("--clip-photo", default=str(REPO / "examples" / "chelsea.jpg"))
    p.add_argument("--clip-frames", type=int, default=10)
    p.add_argument("--compare", default="", help="other filters (files or shipped names, comma-separated) timed "
                   "beside this one in alternating blocks of runs (the machine's speed drifts; ratios hold)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also run the filter N times under ONNX Runtime's profiler: kernel time per operator type "
                        "and of the output stage (the nodes after the decoder's half-size stage)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from fastdream.distill.runtime import FilterRunner

    x = photo(tuple(args.size))
    runner = FilterRunner(args.model, device=args.device, threads=args.threads)
    a = x.numpy()
    load_before = os.getloadavg()[0]
    for _ in range(args.warmup):
        runner.run_numpy(a)
    baselines = {}
    for w in [int(v) for v in args.baselines.split(",") if v.strip()]:
        baselines[w] = _baseline_session(w, args.size, args.threads)
        for _ in range(args.warmup):
            baselines[w].run(None, {"image": a})
    ms = []
    for _ in range(args.runs):  # the filter alone: its time per frame
        t0 = time.perf_counter()
        runner.run_numpy(a)
        ms.append(1000 * (time.perf_counter() - t0))
    # the ratios: the filter and each baseline interleaved run by run, so that they see the same load
    # (the filter's time in this loop, next to 200-500 ms neighbours that evict its caches, is longer)
    inter, base_ms = [], {w: [] for w in baselines}
    for _ in range(args.runs if baselines else 0):
        t0 = time.perf_counter()
        runner.run_numpy(a)
        inter.append(1000 * (time.perf_counter() - t0))
        for w, sess in baselines.items():
            t0 = time.perf_counter()
            sess.run(None, {"image": a})
            base_ms[w].append(1000 * (time.perf_counter() - t0))
    res = {"bench": "filter", "size": args.size, "model": runner.path.name, "provider": runner.provider,
           "threads": args.threads, "params": runner.params, "runs": args.runs,
           "ms_median": statistics.median(ms), "ms_min": min(ms), "ms_p90": float(np.percentile(ms, 90)),
           "ms_spread": statistics.pstdev(ms), "machine": {**machine(), "load_average_1min_before": load_before}}
    print(f"filter {args.size[0]}x{args.size[1]}: median {res['ms_median']:.1f} ms, min {res['ms_min']:.1f} ms "
          f"({runner.provider}, {args.threads} threads, load {load_before:.1f})")
    if baselines:
        res["baselines"] = {}
        res["ms_median_interleaved"] = statistics.median(inter)
        for w, v in base_ms.items():
            name = "styletransfer-lite" if w == 16 else f"styletransfer-width{w}"
            med = statistics.median(v)
            res["baselines"][name] = {"width": w, "ms_median": med, "ms_min": min(v),
                                      "filter_speedup": med / res["ms_median_interleaved"]}
            print(f"{name} (Johnson et al. 2016, width {w}): median {med:.1f} ms; the filter, interleaved with "
                  f"it: {res['ms_median_interleaved']:.1f} ms, {med / res['ms_median_interleaved']:.2f}x faster")
    if args.compare:
        res["compare"] = _compare(runner, [m for m in args.compare.split(",") if m.strip()], a, args)
    if args.profile:
        res["profile"] = _profile(runner.path, a, args.threads, args.profile)
    if args.teacher_runs > 0:
        from fastdream.engine.dream import dream_tensor
        from fastdream.distill.evaluate import teacher_from_params

        if args.teacher_threads:
            torch.set_num_threads(args.teacher_threads)
        bb, obj, cfg, max_size = teacher_from_params(runner.teacher, (args.size[1], args.size[0]))
        secs = []
        for _ in range(args.teacher_runs):
            t0 = time.perf_counter()
            dream_tensor(x, obj, bb, cfg, max_size=max_size)
            secs.append(time.perf_counter() - t0)
        # the filter again, right after, so that both see similar load
        ms2 = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            runner.run_numpy(a)
            ms2.append(1000 * (time.perf_counter() - t0))
        filt = statistics.median(ms + ms2)
        if args.refine:  # the filter finished by the teacher's steps, right after the teacher
            from fastdream.distill.refine import Refiner

            refiner = Refiner(runner.teacher, args.refine)
            rsecs = []
            for _ in range(max(3, args.teacher_runs)):
                t0 = time.perf_counter()
                refiner(torch.from_numpy(runner.run_numpy(a)))
                rsecs.append(time.perf_counter() - t0)
            res["refine"] = {"steps": args.refine, "seconds_median": statistics.median(rsecs),
                             "speedup_over_teacher": statistics.median(secs) / statistics.median(rsecs)}
            print(f"filter + {args.refine} teacher steps: {statistics.median(rsecs):.3f} s per picture, "
                  f"{res['refine']['speedup_over_teacher']:.1f}x faster than the teacher")
        res.update(teacher_seconds=statistics.median(secs), teacher_runs=args.teacher_runs,
                   teacher_threads=torch.get_num_threads(), ms_median_all=filt,
                   speedup=1000 * statistics.median(secs) / filt, load_average_1min_after=os.getloadavg()[0])
        print(f"teacher: {res['teacher_seconds']:.2f} s per picture; filter is {res['speedup']:.0f}x faster")
    if args.fidelity:
        from fastdream.distill.evaluate import evaluate_filter

        ev = evaluate_filter(args.fidelity, runner=runner, size=tuple(args.size), progress=True,
                             reference_seed=args.reference_seed, refine=args.refine)
        res["fidelity"] = {"photos": args.fidelity, "summary": ev["summary"],
                           "pictures": ev["pictures"]}
        s = ev["summary"]
        print(f"fidelity on {s['pictures']} held-out photos at {args.size[0]}x{args.size[1]}: LPIPS-style "
              f"{s['lpips_ratio']:.3f} (worst {s['lpips_ratio_worst']:.3f}), Gram {s['gram_ratio']:.3f} "
              f"(worst {s['gram_ratio_worst']:.3f}) of the input's distance; teacher seed {args.reference_seed}: "
              f"{s['reference_lpips_ratio']:.3f} / {s['reference_gram_ratio']:.3f}; objective gain "
              f"{s['gain_fraction']:.3f} of the teacher's; PSNR to the teacher {s['psnr_db']:.2f} dB")
    if args.clip:
        res["clip"] = _clip(args, runner.path)
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def _compare(runner, models, a, args, block=5):
    """Each filter alone, in alternating blocks of ``block`` runs (the first run of a block, after another
    model evicted the caches, is left out): medians measured under the same drift of the machine's speed."""
    from fastdream.distill.runtime import FilterRunner

    runners = {"this": runner, **{m: FilterRunner(m, device=args.device, threads=args.threads) for m in models}}
    for r in runners.values():
        for _ in range(args.warmup):
            r.run_numpy(a)
    times = {k: [] for k in runners}
    for _ in range(max(1, args.runs // (block - 1))):
        for k, r in runners.items():
            for i in range(block):
                t0 = time.perf_counter()
                r.run_numpy(a)
                if i:
                    times[k].append(1000 * (time.perf_counter() - t0))
    base = statistics.median(times["this"])
    out = {"this_ms_median": base, "block": block}
    print(f"alternating blocks: this filter {base:.1f} ms")
    for k in models:
        med = statistics.median(times[k])
        out[k] = {"model": runners[k].path.name, "ms_median": med, "ms_min": min(times[k]), "time_ratio": med / base}
        print(f"  {k}: {med:.1f} ms, {med / base:.2f}x this filter's time")
    return out


def _profile(path, a, threads, runs):
    """Kernel time per run (ms) from ONNX Runtime's profiler, averaged over ``runs`` + 3 runs (the profiler
    runs from the session's start, so the 3 warm-up runs count too): in all, per operator type, the 15
    slowest nodes, and the nodes of the output layers' scopes (``/head/``, ``/out/``, the export's half-size
    stage ``/tail/``; a full-size ``Resize`` before ``/out/`` has no scope and shows among the slowest nodes)."""
    import collections
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = str(pathlib.Path(tmp) / "profile")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(3):
            sess.run(None, {name: a})
        for _ in range(runs):
            sess.run(None, {name: a})
        events = json.loads(pathlib.Path(sess.end_profiling()).read_text())
    node, op = collections.Counter(), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][:-len("_kernel_time")]
            node[n] += e["dur"] / 1000 / (runs + 3)
            op[n] = e["args"].get("op_name", "?")
    by_op = collections.Counter()
    for n, v in node.items():
        by_op[op[n]] += v
    stage = sum(v for n, v in node.items() if any(k in n for k in ("/head/", "/tail/", "/out/")))
    res = {"runs": runs, "kernel_ms": sum(node.values()), "output_stage_ms": stage,
           "by_op_ms": dict(by_op.most_common()), "top_nodes_ms": dict(node.most_common(15))}
    print(f"profile ({runs} runs): kernel time {res['kernel_ms']:.1f} ms per run, output stage {stage:.1f} ms")
    return res


def _baseline_session(width, size, threads):
    import io

    import onnxruntime as ort
    import torch

    from fastdream.bench.baselines import StyleTransferNet

    torch.manual_seed(0)
    net = StyleTransferNet(width).eval()
    f = io.BytesIO()
    W, H = size
    torch.onnx.export(net, (torch.rand(1, 3, H, W),), f, dynamo=False, opset_version=17, input_names=["image"],
                      output_names=["out"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(f.getvalue(), so, providers=["CPUExecutionProvider"])


def _clip(args, model_path) -> dict:
    """Warp error of ``video --filter`` and of the iterative ``video`` on one panning clip."""
    import subprocess
    import tempfile

    sys.path.insert(0, str(REPO / "bench"))
    from bench_video import make_clip

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_filter."))
    clip = tmp / "pan.mp4"
    make_clip(clip, tuple(args.size), args.clip_frames, photo=args.clip_photo)
    out = {"frames": args.clip_frames, "size": args.size, "photo": pathlib.Path(args.clip_photo).name}
    runs = {"filter": ["--filter", str(model_path)], "iterative": []}
    if args.refine:
        runs[f"filter+refine{args.refine}"] = ["--filter", str(model_path), "--refine", str(args.refine)]
    for name, extra in runs.items():
        rep = tmp / f"{name}.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fastdream.cli.main", "video", str(clip), "-o", str(tmp / f"{name}.mp4"),
                        "--report", str(rep), "--progress", "none", *extra], check=True)
        r = json.loads(rep.read_text())
        out[name] = {"warp_error": r.get("warp_error_mean", r.get("warp_error")), "seconds": time.perf_counter() - t0}
        print(f"clip, {name}: mean warp error {out[name]['warp_error']}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
