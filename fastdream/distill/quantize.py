"""8-bit integer filters: a float ONNX filter quantized with ONNX Runtime's static quantization.

ONNX Runtime's CPU kernels for 8-bit convolutions (``QLinearConv``, with ``QLinearAdd``, ``QLinearConcat``,
``QLinearAveragePool`` between them) run the filter's encoder and the deep part of its decoder in integers.
Weights are quantized per output channel (int8), activations per tensor (uint8) with ranges calibrated on
real photos at the size of use (the 99.99th percentile of each activation's magnitude, not its maximum: a
few outlying values would otherwise spread the 256 levels too thin). The decoder from its quarter-size
stage up (``dec2`` and everything computed from it: ``reduce2``, ``dec1``, ``head``, the output stage and
the joins between them) stays in float: quantizing those layers shifts the output's colours (measured on the
shipped default: 20.5 dB from the float filter with everything quantized, 29.7 dB with that tail in float;
docs/distill.md).

The quantized file keeps the float filter's metadata and adds ``fastdream.precision`` (JSON: ``int8``,
the calibration photos and size, the nodes kept in float) and the check it passed: the mean PSNR of the
int8 filter's output to the float filter's on the calibration photos (``MIN_PSNR_DB``).

>>> from fastdream.distill.quantize import quantize_filter
>>> quantize_filter("default", "default-int8.onnx", "photos/")["psnr_to_float_db"] > 25
True

On a GPU the 8-bit operators have no CUDA kernels in ONNX Runtime; use the float filter there.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import pathlib
import tempfile

import numpy as np
import torch

from fastdream.errors import FastdreamError, InputError

# the first stage of the decoder kept in float, with everything computed from it
FLOAT_FROM = "/dec2/"
# the output stage's convolutions of the picture itself, computed from the input, not from dec2, kept in
# float: the half-size stage of a resize export (fastdream.distill.generator.HalfSizeOutput, whole) and the
# phases stage's picture convolution
FLOAT_ALSO = ("/tail/", "/out_picture/")
PERCENTILE = 99.99
# the quantized filter must stay this close to the float one on its calibration photos (mean PSNR)
MIN_PSNR_DB = 25.0


def float_tail(model) -> list[str]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) computed from the decoder's quarter-size
    stage (``FLOAT_FROM``), that stage included, and the output stage (``FLOAT_ALSO``): the part
    quantization leaves in float."""
    start = [n for n in model.graph.node if n.name.startswith(FLOAT_FROM)]
    if not start:
        raise InputError(f"this filter has no decoder stage named {FLOAT_FROM.strip('/')}: not a fastdream "
                         "filter of a known architecture, so 8-bit quantization does not know which layers "
                         "to keep in float")
    tainted = {o for n in start for o in n.output}
    keep = []
    for n in model.graph.node:  # nodes are in topological order
        if n.name.startswith((FLOAT_FROM, *FLOAT_ALSO)) or any(i in tainted for i in n.input):
            tainted.update(n.output)
            keep.append(n.name)
    return keep


def calibration_pictures(photos, size=(640, 480), count: int = 24, multiple: int = 1) -> list[np.ndarray]:
    """Up to ``count`` photos of the folder ``photos``, evenly spread over its sorted list, resized and
    centre-cropped to ``size`` (W, H), padded to ``multiple`` as the runtime pads: ``[1, 3, H, W]`` float32."""
    from fastdream.distill.dataset import list_photos
    from fastdream.distill.evaluate import resize_and_crop
    from fastdream.imageio import load_image

    files = list_photos(photos)
    if count < 1:
        raise InputError(f"the calibration takes at least one photo, got count {count}")
    pick = [files[round(i * len(files) / min(count, len(files)))] for i in range(min(count, len(files)))]
    out = []
    for f in pick:
        x = resize_and_crop(load_image(f)[0], size).numpy().astype(np.float32)
        h, w = x.shape[2:]
        out.append(np.pad(x, ((0, 0), (0, 0), (0, (-h) % multiple), (0, (-w) % multiple)), mode="edge"))
    return out


def quantize_filter(model, output, photos, *, size=(640, 480), count: int = 24) -> dict:
    """Quantize the float filter ``model`` (a path or a shipped filter's name) to 8 bits, calibrated on
    ``count`` photos of ``photos`` at ``size`` (W, H); write ``output`` atomically and check it (the mean
    PSNR of its outputs to the float filter's on the calibration photos must reach ``MIN_PSNR_DB``).
    Returns a summary (bytes, PSNR, nodes kept in float, metadata)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fastdream.distill.runtime import FilterRunner
    from fastdream.imageio import atomic_write
    from fastdream.metrics import psnr

    out = pathlib.Path(output)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"{out}: the output must be an .onnx file")
    if not out.parent.is_dir() and str(out.parent):
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    runner = FilterRunner(model, device="cpu")
    if not runner.is_fastdream:
        raise InputError(f"{runner.path}: not a fastdream filter (no fastdream.format in its metadata)")
    if runner.precision == "int8":
        raise InputError(f"{runner.path}: already quantized ({runner.metadata['fastdream.precision'][:40]}...); "
                         "quantize the float filter")
    pictures = calibration_pictures(photos, size, count, runner.pad_multiple)

    class Reader(CalibrationDataReader):
        """The photos one at a time (``set_range``): the calibrator keeps every activation of the photos
        it is given until it histograms them (about 0.6 GB per 640x480 photo for the default filter)."""

        def __init__(self):
            self.set_range(0, len(pictures))

        def __len__(self):
            return len(pictures)

        def set_range(self, start_index, end_index):
            self.it = iter(pictures[start_index:end_index])

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {runner.input_name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = str(pathlib.Path(tmp) / "pre.onnx")
        try:  # ONNX's own shape inference: ONNX Runtime's symbolic one gives up on the output stage's border
            # slices, and when it gives up it leaves its model and weights in the working directory
            quant_pre_process(str(runner.path), pre, skip_symbolic_shape=True)
        except Exception as e:  # pragma: no cover - a graph ONNX's shape inference cannot read
            raise FastdreamError(f"{runner.path}: ONNX shape inference failed before quantization ({e})") from None
        m = onnx.load(pre)
        keep = float_tail(m)
        meta = dict(runner.metadata)
        meta["fastdream.precision"] = json.dumps({
            "weights": "int8 per channel", "activations": f"uint8 per tensor, percentile {PERCENTILE}",
            "calibration": {"photos": len(pictures), "size": list(size), "folder": pathlib.Path(photos).name},
            "float_nodes": len(keep), "float_from": FLOAT_FROM.strip("/")})
        report: dict = {}

        def write(path):
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # notes about the shape computations it leaves in float
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
                    quantize_static(pre, path, Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                    nodes_to_exclude=keep, calibrate_method=CalibrationMethod.Percentile,
                                    extra_options={"CalibPercentile": PERCENTILE, "CalibStridedMinMax": 1})
            finally:
                root.setLevel(level)
            q = onnx.load(path)
            del q.metadata_props[:]
            for k, v in meta.items():
                p = q.metadata_props.add()
                p.key, p.value = k, v
            q.doc_string = m.doc_string + " Quantized to 8 bits (fastdream.precision)."
            onnx.save(q, path)
            qr = FilterRunner(path, device="cpu")
            db = [psnr(torch.from_numpy(qr.run_numpy(x)), torch.from_numpy(runner.run_numpy(x))) for x in pictures]
            report["psnr_to_float_db"] = float(np.mean(db))
            report["psnr_to_float_db_worst"] = float(np.min(db))
            if not report["psnr_to_float_db"] >= MIN_PSNR_DB:
                raise FastdreamError(f"8-bit quantization lost too much: {report['psnr_to_float_db']:.1f} dB from "
                                     f"the float filter on the calibration photos (at least {MIN_PSNR_DB} needed)")
            # any size still works (the runtime pads to the filter's multiple; it raises if the shape changes)
            qr.run_numpy(torch.rand(1, 3, 53, 75, generator=torch.Generator().manual_seed(1)).numpy())

        atomic_write(out, write)
    report.update({"output": str(out), "bytes": out.stat().st_size, "source": str(runner.path),
                   "float_nodes": keep, "calibration_photos": len(pictures), "size": list(size),
                   "metadata": {k: v for k, v in meta.items() if k == "fastdream.precision"}})
    return report
