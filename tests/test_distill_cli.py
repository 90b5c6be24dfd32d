"""The filter/export/distill commands: the shipped filter works out of the box; bad input gives one
line on stderr, exit code 2, no traceback and no output file."""
import json
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from fastdream.cli.main import main

REPO = pathlib.Path(__file__).resolve().parents[1]
PHOTO = REPO / "tests" / "data" / "chelsea_224.jpg"
SHIPPED = REPO / "fastdream" / "filters" / "default.onnx"

pytest.importorskip("onnxruntime")


def run(args, capsys):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse errors exit from the parser
        rc = e.code
    out, err = capsys.readouterr()
    return rc, err


def fails_cleanly(args, capsys, output=None, match=None):
    rc, err = run(args, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    if match:
        assert match in lines[0], lines[0]
    if output is not None:
        assert not pathlib.Path(output).exists()
        assert not [f for f in pathlib.Path(output).parent.iterdir() if f.name.startswith(".")]
    return lines[0]


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def test_shipped_filter_is_small_and_described():
    assert SHIPPED.exists() and SHIPPED.stat().st_size <= 5 * 1024 * 1024
    from fastdream.distill.runtime import FilterRunner

    r = FilterRunner("default")
    # the packaged copy (installed or in the source tree) is the repository's file
    assert r.is_fastdream and r.path.name == SHIPPED.name and r.path.read_bytes() == SHIPPED.read_bytes()
    assert r.teacher.get("preset") == "classic"
    assert (SHIPPED.parent / "README.md").exists()


def test_filter_default_model_dreams_and_keeps_size(tmp_path, capsys):
    out, rep = tmp_path / "out.png", tmp_path / "r.json"
    rc, err = run(["filter", PHOTO, "-o", out, "--report", rep, "--repeat", "2"], capsys)
    assert rc == 0, err
    a, b = pixels(PHOTO), pixels(out)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() > 2.0  # it dreams, visibly
    r = json.loads(rep.read_text())
    assert r["provider"] == "CPUExecutionProvider" and r["ms_per_frame"] > 0 and r["params"] > 1000
    assert {"seconds", "peak_rss_mb"} <= set(r) and len(r["ms_per_frame_all"]) == 2
    # no --model on the CPU: the shipped default in 8 bits, and the report says so
    assert pathlib.Path(r["model"]).name == "default-int8.onnx" and r["precision"] == "int8"


def test_filter_strength_zero_returns_the_input(tmp_path, capsys):
    out = tmp_path / "same.png"
    rc, err = run(["filter", PHOTO, "-o", out, "--strength", "0"], capsys)
    assert rc == 0, err
    assert np.array_equal(pixels(PHOTO), pixels(out))


def test_filter_odd_gray_alpha_and_folders(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (9, 17), dtype=np.uint8), "L").save(src / "gray.png")
    Image.fromarray(rng.integers(0, 255, (23, 11, 4), dtype=np.uint8), "RGBA").save(src / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8), "RGB").save(src / "dot.png")
    rc, err = run(["filter", src, "-o", tmp_path / "out"], capsys)
    assert rc == 0, err
    with Image.open(tmp_path / "out" / "alpha.png") as im:
        assert im.size == (11, 23) and im.mode == "RGBA"
    with Image.open(tmp_path / "out" / "gray.png") as im:
        assert im.size == (17, 9)
    with Image.open(tmp_path / "out" / "dot.png") as im:
        assert im.size == (1, 1)


def test_filter_tiles_large_pictures_seamlessly(tmp_path):
    from fastdream.distill.runtime import FilterRunner
    from fastdream.imageio import load_image

    x = load_image(PHOTO)[0].numpy()  # [1, 3, 224, 224]
    whole = FilterRunner().run_numpy(x)
    same = FilterRunner(max_pixels=1024, tile=256, tile_overlap=32).run_numpy(x)  # one tile: no seams at all
    assert np.array_equal(same, whole)
    tiled = FilterRunner(max_pixels=1024, tile=160, tile_overlap=64).run_numpy(x)  # 2x2 tiles, blended
    assert tiled.shape == whole.shape
    # The shipped filter sees about 1,000 pixels of context, so a 160-pixel tile places its eyes and
    # swirls elsewhere than the whole picture does (the difference is of the order of the change
    # itself); that the blend is exact is test_tiled_filter_matches_one_pass_for_a_pointwise_model's
    # job. Here: the tiled output still dreams, and shows no seam: the jump between neighbouring
    # columns (rows) where a tile begins or ends is no larger than the largest jump elsewhere.
    change = np.abs(whole - x).mean()
    assert np.abs(tiled - x).mean() > 0.5 * change
    from fastdream.ops.tiling import tile_layout

    lay = tile_layout(x.shape[2], x.shape[3], tile=160, overlap=64)
    for axis, starts, n, t in ((3, lay.xs, x.shape[3], lay.tile_w), (2, lay.ys, x.shape[2], lay.tile_h)):
        jump = np.abs(np.diff(tiled, axis=axis)).mean(axis=tuple(a for a in range(4) if a != axis))
        edges = sorted({v for s0 in starts for v in (s0 - 1, s0 + t - 1) if 0 <= v < n - 1})
        others = np.delete(jump, edges)
        assert edges and jump[edges].max() <= others.max(), (axis, jump[edges], others.max())


def test_filter_runner_as_frame_processor():
    from fastdream.distill.api import apply_filter, load_filter

    run = load_filter()
    x = torch.rand(1, 3, 31, 45, generator=torch.Generator().manual_seed(1))
    y = run(x)
    assert y.shape == x.shape and y.dtype == x.dtype and run.last_ms is not None
    arr = (np.random.default_rng(2).random((20, 30, 3)) * 255).astype(np.uint8)
    out = apply_filter(arr, strength=0.0)
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_filter_cuda_request_falls_back_with_a_note(tmp_path, capsys):
    from fastdream.distill.runtime import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    rc, err = run(["filter", PHOTO, "-o", tmp_path / "o.jpg", "--device", "cuda"], capsys)
    assert rc == 0 and "running on the CPU" in err


def _onnx_model(path, in_shape, out_shape, op="Identity"):
    import onnx
    from onnx import TensorProto, helper

    i = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
    o = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g", [i], [o])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def test_filter_foreign_models(tmp_path, capsys):
    ok = tmp_path / "identity.onnx"
    _onnx_model(ok, ["n", 3, "h", "w"], ["n", 3, "h", "w"])
    rc, err = run(["filter", PHOTO, "-o", tmp_path / "id.png", "--model", ok], capsys)
    assert rc == 0 and "no fastdream metadata" in err
    assert np.array_equal(pixels(PHOTO), pixels(tmp_path / "id.png"))
    bad = tmp_path / "vector.onnx"
    _onnx_model(bad, ["n", 10], ["n", 10])
    fails_cleanly(["filter", PHOTO, "-o", tmp_path / "v.png", "--model", bad], capsys, tmp_path / "v.png",
                  "not a picture filter")


def test_filter_refine_is_the_teachers_steps_on_the_filters_output(tmp_path, capsys):
    """``--refine K``: K steps of the filter's teacher (its objective, step size, jitter, seed) at full size,
    one octave, on the filter's output; the same as dreaming that output with the teacher's schedule cut to
    one octave of K steps."""
    from fastdream.distill.evaluate import teacher_from_params
    from fastdream.distill.refine import Refiner
    from fastdream.distill.runtime import FilterRunner
    from fastdream.engine.dream import dream_tensor
    from fastdream.imageio import load_image

    out, raw, rep = tmp_path / "refined.png", tmp_path / "raw.png", tmp_path / "r.json"
    rc, err = run(["filter", PHOTO, "-o", out, "--refine", "2", "--report", rep], capsys)
    assert rc == 0, err
    rc, err = run(["filter", PHOTO, "-o", raw], capsys)
    assert rc == 0, err
    r = json.loads(rep.read_text())
    assert r["refine"] == 2 and r["refine_ms"] > 0
    # the reference: the filter's output dreamed by the teacher with one octave of two steps
    runner = FilterRunner()
    x, _ = load_image(PHOTO)
    f = torch.from_numpy(runner.run_numpy(x.numpy()))
    bb, obj, cfg, _ = teacher_from_params(runner.teacher, tuple(x.shape[-2:]))
    assert (cfg.octaves, cfg.steps) != (1, 2)
    import dataclasses

    ref, _ = dream_tensor(f.clone(), obj, bb, dataclasses.replace(cfg, octaves=1, steps=2))
    ref8 = (ref.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
    got = pixels(out)
    assert np.abs(got - ref8).max() <= 1
    # the steps change the picture where the filter drew, and raise the teacher's objective
    assert np.abs(got - pixels(raw)).mean() > 0.5
    from fastdream.engine.dream import Dreamer

    ev = Dreamer(bb, obj, cfg)
    assert ev.evaluate(ref) > ev.evaluate(f)
    # 0 steps: the picture as it is
    assert Refiner(runner.teacher, 0)(f) is f


def test_refine_bad_input(tmp_path, capsys):
    from fastdream.distill.refine import Refiner
    from fastdream.errors import FastdreamError

    out = tmp_path / "o.png"
    fails_cleanly(["filter", PHOTO, "-o", out, "--refine", "-1"], capsys, out, "--refine")
    fails_cleanly(["filter", PHOTO, "-o", out, "--refine", "two"], capsys, out, "--refine")
    ok = tmp_path / "identity.onnx"
    _onnx_model(ok, ["n", 3, "h", "w"], ["n", 3, "h", "w"])
    fails_cleanly(["filter", PHOTO, "-o", out, "--model", ok, "--refine", "1"], capsys, out,
                  "--refine needs a fastdream filter")
    for bad in (-1, 101, 1.5, True, "2"):
        with pytest.raises(FastdreamError, match="whole number of steps"):
            Refiner({"objective_spec": {"layers": ["block9"]}}, bad)


@pytest.mark.parametrize("case", ["not_onnx", "missing", "bad_device", "bad_output", "empty_folder", "strength"])
def test_filter_bad_input(case, tmp_path, capsys):
    out = tmp_path / "o.png"
    args = ["filter", PHOTO, "-o", out]
    if case == "not_onnx":
        (tmp_path / "x.onnx").write_text("hello")
        args += ["--model", tmp_path / "x.onnx"]
    elif case == "missing":
        args[1] = tmp_path / "nope.jpg"
    elif case == "bad_device":
        args += ["--device", "tpu"]
    elif case == "bad_output":
        out = tmp_path / "o.xyz"
        args[3] = out
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        out = tmp_path / "outdir"
        args = ["filter", tmp_path / "empty", "-o", out]
    elif case == "strength":
        args += ["--strength", "-1"]
    fails_cleanly(args, capsys, out)


def test_distill_dataset_empty_folder(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    fails_cleanly(["distill", "dataset", tmp_path / "photos", "-o", tmp_path / "data"], capsys,
                  tmp_path / "data", "no pictures")


def test_export_bad_checkpoints(tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"format": "fastdream-distill-checkpoint-v1", "arch": "pix2pix", "model": {}}, other)
    fails_cleanly(["export", other, "-o", tmp_path / "o.onnx"], capsys, tmp_path / "o.onnx", "architecture")
    junk = tmp_path / "junk.pt"
    junk.write_text("junk")
    fails_cleanly(["export", junk, "-o", tmp_path / "o.onnx"], capsys, tmp_path / "o.onnx")
    fails_cleanly(["export", tmp_path / "none.pt", "-o", tmp_path / "o.onnx"], capsys, tmp_path / "o.onnx")


def test_distill_train_bad_data(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    fails_cleanly(["distill", "train", tmp_path / "d", "-o", tmp_path / "f.pt"], capsys, tmp_path / "f.pt",
                  "not a fastdream dataset")
    for bad in ("5", "0", "two"):
        fails_cleanly(["distill", "train", tmp_path / "d", "-o", tmp_path / "f.pt", "--disc-scales", bad], capsys,
                      tmp_path / "f.pt", "--disc-scales")
    for bad in ("-1", "9", "nan"):
        fails_cleanly(["distill", "train", tmp_path / "d", "-o", tmp_path / "f.pt", "--disc-highpass", bad], capsys,
                      tmp_path / "f.pt", "--disc-highpass")


def test_video_frame_processor_uses_the_filter_runner():
    pytest.importorskip("fastdream.video.coherence")
    from fastdream.video.coherence import filter_processor

    proc = filter_processor(SHIPPED, "cpu")
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(4))
    y = proc(x)
    assert y.shape == x.shape and float((y - x).abs().mean()) > 1e-3


def test_shipped_filters_are_picked_by_name(tmp_path, capsys):
    from fastdream.distill.runtime import FilterRunner, shipped_filters

    assert {"default", "fast", "textures"} <= set(shipped_filters())
    r = FilterRunner("textures")
    assert r.path.name == "textures.onnx" and r.teacher.get("preset") == "textures"
    # the default reads the picture at full and half size (sizes in steps of 32); fast is the narrower one
    d, f = FilterRunner("default"), FilterRunner("fast")
    assert d.teacher.get("preset") == "classic"
    assert f.path.name == "fast.onnx" and f.teacher.get("preset") == "classic"
    assert (d.metadata["fastdream.pad_multiple"], f.metadata["fastdream.pad_multiple"]) == ("32", "16")
    assert f.params < d.params and f.path.stat().st_size <= 5 * 1024 * 1024
    out = tmp_path / "t.png"
    rc, err = run(["filter", PHOTO, "-o", out, "--model", "textures"], capsys)
    assert rc == 0, err
    assert np.abs(pixels(PHOTO) - pixels(out)).mean() > 1.0  # it changes the picture
    rc, err = run(["filter", PHOTO, "-o", tmp_path / "n.png", "--model", "nosuchfilter"], capsys)
    assert rc == 2 and "shipped filters: " in err and "textures" in err
    assert not (tmp_path / "n.png").exists()


def _calibration_photos(tmp_path):
    d = tmp_path / "calib"
    d.mkdir()
    for p in (PHOTO, REPO / "tests" / "data" / "astronaut_128.jpg"):
        (d / p.name).write_bytes(p.read_bytes())
    return d


def test_export_int8_quantizes_a_shipped_filter(tmp_path, capsys, monkeypatch):
    import onnx

    from fastdream.distill.runtime import FilterRunner

    out, rep = tmp_path / "fast8.onnx", tmp_path / "r.json"
    calib = _calibration_photos(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc, err = run(["export", "fast", "-o", out, "--int8", calib, "--calibration-size", "128", "96", "--report", rep],
                  capsys)
    assert rc == 0, err
    assert sorted(f.name for f in tmp_path.iterdir()) == ["calib", "fast8.onnx", "r.json"]  # nothing else left
    report = json.loads(rep.read_text())
    assert report["calibration_photos"] == 2 and report["size"] == [128, 96]
    assert report["psnr_to_float_db"] >= 25.0
    m = onnx.load(str(out))
    ops = {n.name: n.op_type for n in m.graph.node}
    assert sum(t == "QLinearConv" for t in ops.values()) > 20      # the encoder and the deep decoder
    assert ops["/dec1/pointwise/Conv"] == "Conv"                    # the tail stays float: the decoder's last
    tail = [n for n in ops if n.startswith("/tail/")]              # stages and the whole output stage
    assert tail and all(not ops[n].startswith("QLinear") for n in tail) and set(tail) <= set(report["float_nodes"])
    assert "/dec1/pointwise/Conv" in report["float_nodes"]
    q, f = FilterRunner(out, device="cpu"), FilterRunner("fast", device="cpu")
    precision = json.loads(q.metadata["fastdream.precision"])
    assert precision["weights"].startswith("int8") and precision["calibration"]["photos"] == 2
    assert q.teacher == f.teacher and q.pad_multiple == f.pad_multiple
    # another size than the calibration's, not a multiple of 16: the same picture as the float filter, nearly
    from fastdream.imageio import load_image

    x = load_image(PHOTO)[0][..., :150, :170].contiguous().numpy()
    a, b = f.run_numpy(x), q.run_numpy(x)
    assert a.shape == b.shape == x.shape
    assert 10 * np.log10(1.0 / float(np.mean((a - b) ** 2))) > 22.0
    assert np.abs(b - x).mean() > 0.5 * np.abs(a - x).mean()           # it still dreams
    # an 8-bit filter is not quantized again
    fails_cleanly(["export", out, "-o", tmp_path / "again.onnx", "--int8", tmp_path / "calib"], capsys,
                  tmp_path / "again.onnx", match="already quantized")


def test_export_int8_bad_input(tmp_path, capsys):
    out = tmp_path / "q.onnx"
    fails_cleanly(["export", "fast", "-o", out, "--int8", tmp_path / "nofolder"], capsys, out,
                  match="not a folder of photos")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails_cleanly(["export", "fast", "-o", out, "--int8", empty], capsys, out, match="no pictures in this folder")
    fails_cleanly(["export", "fast", "-o", tmp_path / "q.png", "--int8", _calibration_photos(tmp_path)], capsys,
                  tmp_path / "q.png", match="must be an .onnx file")
    # an ONNX picture filter that is not a fastdream filter: nothing says which layers to keep in float
    import torch.nn as nn

    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(nn.Conv2d(3, 3, 3, padding=1), (torch.rand(1, 3, 32, 32),), str(foreign), dynamo=False,
                      input_names=["image"], output_names=["dream"],
                      dynamic_axes={"image": {2: "h", 3: "w"}, "dream": {2: "h", 3: "w"}})
    fails_cleanly(["export", foreign, "-o", out, "--int8", tmp_path / "calib"], capsys, out,
                  match="not a fastdream filter")
    # the Python entry point refuses the same way
    from fastdream.distill import api
    from fastdream.errors import InputError

    with pytest.raises(InputError, match="no pictures in this folder"):
        api.quantize("fast", out, empty)
    assert not out.exists()


def test_default_filter_runs_in_8_bits_on_the_cpu():
    from fastdream.distill.runtime import DEFAULT_FILTER_INT8, FilterRunner
    from fastdream.imageio import load_image

    assert DEFAULT_FILTER_INT8.exists() and DEFAULT_FILTER_INT8.stat().st_size <= 5 * 1024 * 1024
    auto, flt = FilterRunner(device="cpu"), FilterRunner("default", device="cpu")
    assert auto.path.name == "default-int8.onnx" and flt.path.name == "default.onnx"
    assert (auto.precision, flt.precision) == ("int8", "float32")
    fast8 = FilterRunner("fast-int8", device="cpu")  # the fast filter's 8-bit form, by name
    assert fast8.precision == "int8" and fast8.teacher == FilterRunner("fast", device="cpu").teacher
    assert fast8.path.stat().st_size <= 5 * 1024 * 1024
    assert auto.teacher == flt.teacher and auto.pad_multiple == flt.pad_multiple
    x = load_image(PHOTO)[0].numpy()
    a, b = flt.run_numpy(x), auto.run_numpy(x)
    assert 10 * np.log10(1.0 / float(np.mean((a - b) ** 2))) > 22.0


def test_default_filter_falls_back_to_8_bits_when_cuda_cannot_start(monkeypatch):
    # an onnxruntime that lists the CUDA provider but cannot start it (no GPU): the session runs on the
    # CPU, so the default filter is its 8-bit form there too, and the fallback is said
    import onnxruntime as ort

    from fastdream.distill.runtime import FilterRunner

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    r = FilterRunner(device="cuda")
    assert r.provider == "CPUExecutionProvider" and r.path.name == "default-int8.onnx" and r.precision == "int8"
    assert r.fallback and "could not start" in r.fallback
    assert FilterRunner("default", device="cuda").path.name == "default.onnx"  # a named filter stays as named
