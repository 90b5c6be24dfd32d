"""Export a trained generator to ONNX, with its contract in the model's metadata, and prove it by running.

The graph: input ``image`` float32 ``[batch, 3, height, width]``, RGB in [0, 1]; output ``dream`` of the
same shape and range. Batch, height and width are dynamic; any height and width >= 1 works (every
resize in the graph targets the size of the feature it joins, so nothing needs padding).

Metadata (``onnx.ModelProto.metadata_props``, read back with
``onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map``):

=========================  ======================================================================
``fastdream.format``       ``fastdream-filter-v1`` (what marks a fastdream filter)
``fastdream.arch``         the generator architecture and its settings (JSON)
``fastdream.input``        ``image: float32 [N, 3, H, W], RGB in [0, 1]``
``fastdream.output``       ``dream: float32 [N, 3, H, W], RGB in [0, 1]``
``fastdream.pad_multiple`` sizes the graph needs to be a multiple of (``1``: any size)
``fastdream.teacher``      the iterative dream it was distilled from (preset, objective, schedule; JSON)
``fastdream.training``     steps, pairs, held-out PSNR, loss settings, parameter count (JSON)
``fastdream.version``      the fastdream version that exported it
=========================  ======================================================================
"""
from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import torch

from fastdream.errors import FastdreamError, InputError

FILTER_FORMAT = "fastdream-filter-v1"
INPUT_NAME, OUTPUT_NAME = "image", "dream"
OPSET = 17
# float32 ONNX Runtime vs torch on the same weights: both accumulate ~1e-6 relative rounding per
# layer over ~20 layers on values of order 1; 1e-4 leaves a wide margin while still catching a wrong op.
ORT_TOLERANCE = 1e-4


def export_onnx(checkpoint, output, *, example_size=(96, 128), check_size=(75, 53), validate: bool = True) -> dict:
    """Export ``checkpoint`` (.pt from ``fastdream distill train``, or a float .onnx filter to re-export with
    this version's graph) to ``output`` (.onnx).

    The model is traced at ``example_size`` (H, W) and, with ``validate``, checked by the ONNX checker
    and by ONNX Runtime on ``check_size`` (a different, odd size) against torch (max abs error
    <= 1e-4). A v3 generator is traced with its output stage at half size
    (:class:`~fastdream.distill.generator.HalfSizeOutput`) and checked against the stage as trained.
    The file is written atomically. Returns a summary (sizes, error, metadata).

    >>> from fastdream.distill.export import export_onnx
    >>> export_onnx("filter.pt", "filter.onnx")["max_abs_error"] < 1e-4
    True
    """
    import onnx

    from fastdream import __version__
    from fastdream.imageio import atomic_write

    out = pathlib.Path(output)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"{out}: the output must be an .onnx file")
    if not out.parent.is_dir() and str(out.parent):
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    from fastdream.distill.runtime import shipped_filters

    src = pathlib.Path(checkpoint)
    if src.suffix.lower() == ".onnx" or (not src.exists() and str(checkpoint) in shipped_filters()):
        model, meta = generator_from_onnx(checkpoint)
    else:
        model, meta = _from_checkpoint(checkpoint)
    meta["fastdream.version"] = __version__
    training = json.loads(meta["fastdream.training"])
    # traced at a size the graph takes as it is (else the generator's own padding would be traced)
    step = int(meta["fastdream.pad_multiple"])
    h, w = (-(-int(n) // step) * step for n in example_size)
    example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))

    if hasattr(model, "half_size_output"):
        model.half_size_output()
    for mod in model.modules():  # BatchNorm foldings cached by an earlier forward pass (conv_bn) would be traced
        mod.__dict__.pop("_folded", None)  # as constants, one copy per use; traced afresh they fold to shared weights

    def write(tmp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about shapes used as sizes (they stay dynamic)
            torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                            OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}})
        m = onnx.load(tmp)
        for k, v in meta.items():
            p = m.metadata_props.add()
            p.key, p.value = k, v
        mult = meta["fastdream.pad_multiple"]
        m.doc_string = ("fastdream dream filter. Input 'image' float32 [N, 3, H, W] RGB in [0, 1]; output 'dream' "
                        "same shape and range. " + ("Any N, H, W." if mult == "1" else
                        f"H and W multiples of {mult}: pad other sizes by edge replication, crop the output back."))
        m.producer_name = "fastdream"
        m.producer_version = __version__
        fold_pads_into_convs(m)
        onnx.checker.check_model(m)
        onnx.save(m, tmp)
        if validate:  # against the generator as it was trained (the full-size output stage)
            if hasattr(model, "half_size_output"):
                model.tail = None
            report["max_abs_error"], report["check_size"] = check_against_torch(
                tmp, model, check_size, int(meta["fastdream.pad_multiple"]))

    report: dict = {}
    atomic_write(out, write)
    report.update({"output": str(out), "bytes": out.stat().st_size, "opset": OPSET, "example_size": [h, w],
                   "tolerance": ORT_TOLERANCE, "metadata": meta, "params": training["params"]})
    return report


def _from_checkpoint(checkpoint) -> tuple[torch.nn.Module, dict]:
    """The generator of a training checkpoint and the metadata its export carries."""
    from fastdream.distill.checkpoint import load_generator
    from fastdream.distill.generator import count_params, pad_multiple

    model, ck = load_generator(checkpoint)
    hist = ck.get("history") or []
    last = hist[-1] if hist else {}
    tc = ck.get("train_config") or {}
    training = {"steps": ck.get("step"),
                **{k: tc.get(k) for k in ("batch", "crop", "lr", "pixel_weight", "feature_weight", "feature_layers",
                                          "style_weight", "style_layers", "objective_weight", "objective_target",
                                          "loss_margin", "temporal_weight", "unpaired", "adversarial_weight",
                                          "adversarial_start", "precision", "init") if k in tc},
                "val_psnr_db": last.get("val_psnr_db"), "val_input_psnr_db": last.get("val_input_psnr_db"),
                "params": count_params(model)}
    meta = {
        "fastdream.format": FILTER_FORMAT,
        "fastdream.arch": json.dumps({"name": model.config.arch, **ck["generator"],
                                        "stride": pad_multiple(model.config) if model.config.version >= 2 else 8}),
        "fastdream.input": f"{INPUT_NAME}: float32 [N, 3, H, W], RGB in [0, 1]",
        "fastdream.output": f"{OUTPUT_NAME}: float32 [N, 3, H, W], RGB in [0, 1]",
        "fastdream.pad_multiple": str(pad_multiple(model.config) if model.config.version == 3 else 1),
        "fastdream.teacher": json.dumps(ck.get("teacher") or {}, default=str),
        "fastdream.training": json.dumps(training),
    }
    return model, meta


def generator_from_onnx(path) -> tuple[torch.nn.Module, dict]:
    """The generator a float fastdream filter (an .onnx path or a shipped filter's name) was exported from,
    and the file's metadata.

    The weights are read from the graph's initializers by their parameter names; a v3 generator's frozen
    encoder, whose BatchNorm the export folded, comes from the embedded backbone's weights. The rebuilt
    generator is run beside the file with ONNX Runtime, and anything but the same pictures (a filter whose
    encoder was trained, an 8-bit or foreign file) is refused: it cannot be re-exported."""
    import dataclasses

    import onnx
    from onnx import numpy_helper

    from fastdream.distill.generator import ARCHS, GeneratorConfig, build_generator
    from fastdream.distill.runtime import FilterRunner

    runner = FilterRunner(path, device="cpu")  # a path or a shipped name; folders and unreadable files refused
    p, meta = runner.path, runner.metadata
    if not runner.is_fastdream:
        raise InputError(f"{p}: not a fastdream filter (no {FILTER_FORMAT} in its metadata)")
    if runner.precision == "int8":
        raise InputError(f"{p}: an 8-bit filter; re-export the float filter it was made from")
    try:
        arch = json.loads(meta["fastdream.arch"])
        fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
        config = GeneratorConfig(**{k: v for k, v in arch.items() if k in fields})
        config.version = ARCHS.index(arch["name"]) + 1
        config.validate()
        json.loads(meta["fastdream.training"])
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"{p}: unreadable fastdream.arch or fastdream.training metadata ({e})") from None
    model = build_generator(config, pretrained=config.version == 3).eval()  # v3: the encoder from the backbone
    state = model.state_dict()
    m = onnx.load(str(p))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    if config.version == 3 and "out.weight" not in inits:  # exported with the half-size output stage
        inits.update(_output_weights_from_tail(m, inits))
    missing = [k for k in state if k not in inits and not (config.version == 3 and k.startswith("encoder."))]
    if missing:
        raise InputError(f"{p}: the graph does not hold the generator's weights by name ({missing[0]} and "
                         f"{len(missing) - 1} more are missing); it cannot be re-exported")
    for k in state:
        if k in inits:
            w = torch.from_numpy(np.array(inits[k], dtype=np.float32))
            if w.shape != state[k].shape:
                raise InputError(f"{p}: {k} has shape {tuple(w.shape)}, the generator needs {tuple(state[k].shape)}")
            state[k] = w
    model.load_state_dict(state)
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        err = float(np.abs(runner.run_numpy(x.numpy()) - model(x).numpy()).max())
    if not err <= ORT_TOLERANCE:
        raise InputError(f"{p}: the generator rebuilt from its weights does not reproduce it (max difference "
                         f"{err:.3g}, tolerance {ORT_TOLERANCE}); it cannot be re-exported")
    return model, dict(meta)


def _output_weights_from_tail(m, inits: dict) -> dict:
    """``out.weight`` and ``out.bias`` of a v3 graph exported with the half-size output stage, recovered from
    its two convolutions: the one whose output is pixel-shuffled (``DepthToSpace``: the phase kernel and
    bias) and the one inside the stage that reads the picture itself. ``inits``: the graph's initializers."""
    from fastdream.distill.generator import HalfSizeOutput

    from onnx import numpy_helper

    producers = {o: n for n in m.graph.node for o in n.output}
    inits = {**inits, **{n.output[0]: numpy_helper.to_array(a.t) for n in m.graph.node if n.op_type == "Constant"
                         for a in n.attribute if a.name == "value"}}  # the stage's tensors are traced constants
    shuffle = [n for n in m.graph.node if n.op_type == "DepthToSpace"]
    phase = producers.get(shuffle[-1].input[0]) if shuffle else None

    def reads_picture(n):  # the picture, or the picture edge-padded (padding="replicate")
        src = producers.get(n.input[0])
        return n.input[0] == INPUT_NAME or (src is not None and src.op_type == "Pad" and src.input[0] == INPUT_NAME)

    picture = [n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith("/tail/") and reads_picture(n)]
    if phase is None or phase.op_type != "Conv" or len(phase.input) < 3 or len(picture) != 1 \
            or not all(i in inits for i in (phase.input[1], phase.input[2], picture[0].input[1])):
        return {}
    w, b = HalfSizeOutput.full_size_weights(torch.from_numpy(np.array(inits[phase.input[1]])),
                                            torch.from_numpy(np.array(inits[phase.input[2]])),
                                            torch.from_numpy(np.array(inits[picture[0].input[1]])))
    return {"out.weight": w.numpy(), "out.bias": b.numpy()}


def fold_pads_into_convs(m) -> int:
    """Fold each zero ``Pad`` whose amounts are constant (the TensorFlow-style "SAME" padding of the
    backbone's strided convolutions) into the ``pads`` of the one ``Conv`` it feeds; returns how many.

    The exporter writes those amounts as a small chain of constant nodes that ONNX Runtime does not fold
    into the convolution, so each Pad copied its whole input: 7.4 of 45 ms at 640x480 for the v3
    filter. The amounts are evaluated with ONNX's reference evaluator; a Pad that depends on the
    input's shape, pads the batch or channels, or feeds anything else is left as it is."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    g = m.graph
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name for t in g.initializer}

    def constant_inputs(name, seen):  # the nodes computing `name`, if it depends on no graph input
        if name in inits or name == "":
            return True
        n = producers.get(name)
        if n is None:
            return False
        if n.name in seen:
            return True
        seen[n.name] = n
        return all(constant_inputs(i, seen) for i in n.input)

    folded = 0
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        users = consumers.get(pad.output[0], [])
        if mode != b"constant" or len(users) != 1 or users[0].op_type != "Conv" or pad.output[0] in {o.name for o in g.output}:
            continue
        if len(pad.input) > 2 and pad.input[2]:
            continue  # a pad value other than the default zero
        seen: dict = {}
        if not constant_inputs(pad.input[1], seen):
            continue
        order = {n.name: k for k, n in enumerate(g.node)}
        sub = helper.make_graph(sorted(seen.values(), key=lambda n: order[n.name]), "pads", [],
                                [helper.make_tensor_value_info(pad.input[1], onnx.TensorProto.INT64, None)],
                                [t for t in g.initializer if any(t.name in n.input for n in seen.values())])
        amounts = np.asarray(ReferenceEvaluator(helper.make_model(sub, opset_imports=m.opset_import)).run(None, {})[0])
        r = amounts.size // 2
        if r != 4 or amounts[[0, 1, 4, 5]].any() or (amounts < 0).any():
            continue
        conv = users[0]
        old = next((a for a in conv.attribute if a.name == "pads"), None)
        base = list(old.ints) if old is not None else [0, 0, 0, 0]
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in conv.attribute):
            continue
        new = [base[0] + int(amounts[2]), base[1] + int(amounts[3]), base[2] + int(amounts[6]), base[3] + int(amounts[7])]
        if old is not None:
            conv.attribute.remove(old)
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        g.node.remove(pad)
        folded += 1
    return folded


def check_against_torch(path, model, size=(75, 53), multiple: int = 1) -> tuple[float, list[int]]:
    """Run ONNX Runtime on a seeded random picture of ``size`` (H, W) and compare with ``model``; a graph
    that needs sizes in steps of ``multiple`` gets the picture padded as the runtime pads it (edge
    replication, output cropped back)."""
    import onnxruntime as ort

    h, w = size
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xn = np.pad(x.numpy(), ((0, 0), (0, 0), (0, (-h) % multiple), (0, (-w) % multiple)), mode="edge")
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: xn})[0][:, :, :h, :w]
    with torch.no_grad():
        want = model(x).numpy()
    if got.shape != want.shape:
        raise FastdreamError(f"ONNX export check: output shape {got.shape} differs from torch's {want.shape}")
    err = float(np.abs(got - want).max())
    if not err <= ORT_TOLERANCE:
        raise FastdreamError(f"ONNX export check: ONNX Runtime differs from torch by {err:.3g} "
                             f"(tolerance {ORT_TOLERANCE}) at size {h}x{w}")
    return err, [h, w]
