"""Running a dream filter with ONNX Runtime: providers, sizes, tiling, strength.

>>> from fastdream.distill.runtime import FilterRunner
>>> run = FilterRunner()                       # the filter shipped with fastdream, CUDA if available
>>> y = run(torch.rand(1, 3, 480, 640))        # [1, 3, H, W] in [0, 1] -> same shape
>>> run.provider, run.path.name, run.last_ms   # on the CPU its 8-bit form
('CPUExecutionProvider', 'default-int8.onnx', 36.7)

``FilterRunner`` is also the frame processor of ``fastdream video --filter``: one call per frame,
``[1, 3, H, W]`` float32 in, the same out, on the CPU (tensors on another device are moved back).
"""
from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np
import torch

from fastdream.errors import FastdreamError, InputError

DEFAULT_FILTER = pathlib.Path(__file__).resolve().parents[1] / "filters" / "default.onnx"
# the same filter quantized to 8 bits (fastdream.distill.quantize): what runs when no filter is named and
# ONNX Runtime runs on the CPU (the same fidelity, 0.61-0.80x the time; docs/distill.md)
DEFAULT_FILTER_INT8 = DEFAULT_FILTER.with_name("default-int8.onnx")
FILTER_FORMAT = "fastdream-filter-v1"
# Pictures above this many pixels are filtered tile by tile (the 16-channel half-resolution features
# of the default filter take ~32 bytes per input pixel; 4 Mpx keep the peak near 200 MB).
MAX_PIXELS = 2048 * 2048


def default_filter_path() -> pathlib.Path:
    """The filter shipped in the package (``fastdream/filters/default.onnx``)."""
    if not DEFAULT_FILTER.exists():
        raise InputError(f"the shipped filter {DEFAULT_FILTER} is missing from this installation; "
                         "pass --model FILTER.onnx")
    return DEFAULT_FILTER


def shipped_filters() -> list[str]:
    """Names of the filters shipped in the package (``default`` and any other ``fastdream/filters/*.onnx``)."""
    return sorted(f.stem for f in DEFAULT_FILTER.parent.glob("*.onnx"))


def resolve_filter(spec=None) -> pathlib.Path:
    """The filter file for ``spec``: None -> the shipped default; a path as given; a shipped filter's name
    (``default``) when no file of that name exists. Missing files are refused, naming the shipped ones."""
    if spec is None:
        return default_filter_path()
    p = pathlib.Path(spec)
    if not p.exists() and str(spec) in shipped_filters():
        return DEFAULT_FILTER.parent / f"{spec}.onnx"
    if not p.exists():
        names = ", ".join(shipped_filters()) or "none in this installation"
        raise InputError(f"{p}: no such file, and no such filter is shipped (shipped filters: {names})")
    return p


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class FilterRunner:
    """An ONNX dream filter ready to run.

    Args:
        model: path of an ``.onnx`` filter, or the name of a shipped one (``"default"``, ``"default-int8"``);
            None: the filter shipped with fastdream, in 8 bits (``default-int8``) where ONNX Runtime
            runs on the CPU, in float (``default``) on CUDA (8-bit operators have no CUDA kernels).
        device: ``auto`` (CUDA when onnxruntime-gpu and a GPU are present), ``cpu`` or ``cuda``.
        strength: mix with the original, ``x + strength * (filter(x) - x)``; 0 returns the input.
        threads: ONNX Runtime intra-op threads (default: all cores).
        max_pixels: pictures above this are filtered in overlapping tiles of ``tile`` pixels.
        tile, tile_overlap: tile size and overlap (blended linearly).

    ``provider`` is the execution provider in use; ``fallback`` a sentence when the GPU was asked for
    and the CPU is used instead (else None); ``metadata`` the model's fastdream metadata (empty for
    a foreign model); ``last_ms`` the inference time of the last call in milliseconds.
    """

    def __init__(self, model=None, device: str = "auto", strength: float = 1.0, threads: int | None = None,
                 max_pixels: int = MAX_PIXELS, tile: int = 1024, tile_overlap: int = 64):
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover
            raise FastdreamError("onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu)") from None
        self.path = resolve_filter(model)
        default = model is None
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, not an ONNX model")
        d = (device or "auto").lower()
        if d not in ("auto", "cpu") and not d.startswith("cuda"):
            raise InputError(f"unknown device {device!r}; choose auto, cpu or cuda")
        if not (0.0 <= float(strength) and np.isfinite(strength)):
            raise InputError(f"strength must be a number >= 0, got {strength!r}")
        if tile_overlap < 0 or tile <= 2 * tile_overlap:
            raise InputError(f"tile ({tile}) must be larger than twice the overlap ({tile_overlap})")
        self.strength = float(strength)
        self.max_pixels, self.tile, self.tile_overlap = int(max_pixels), int(tile), int(tile_overlap)
        have = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if d != "cpu" and "CUDAExecutionProvider" in have:
            dev_id = int(d.split(":", 1)[1]) if ":" in d else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        if default and providers == ["CPUExecutionProvider"] and DEFAULT_FILTER_INT8.exists():
            self.path = DEFAULT_FILTER_INT8
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:
            with open(self.path, "rb") as f:
                head = f.read(4)
            if head == b"PK\x03\x04" or self.path.suffix.lower() in (".pt", ".pth", ".ckpt"):  # torch.save's zip
                raise InputError(f"{self.path}: a PyTorch checkpoint, not an ONNX filter; make the filter with "
                                 f"`fastdream export {self.path} -o {self.path.with_suffix('.onnx').name}`") from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{self.path}: not an ONNX model ONNX Runtime can load ({first[:200]})") from None
        self.provider = self.session.get_providers()[0]
        if default and self.provider == "CPUExecutionProvider" and self.path != DEFAULT_FILTER_INT8 \
                and DEFAULT_FILTER_INT8.exists():  # CUDA was asked for and could not start
            self.path = DEFAULT_FILTER_INT8
            self.session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.fallback = None
        if d.startswith("cuda") and self.provider != "CUDAExecutionProvider":
            why = ("onnxruntime-gpu is not installed (this onnxruntime has no CUDA provider)"
                   if "CUDAExecutionProvider" not in have else "the CUDA provider could not start (no GPU?)")
            self.fallback = f"--device cuda: {why}; running on the CPU"
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        self.metadata = {k: v for k, v in meta.items() if k.startswith("fastdream.")}
        self.is_fastdream = self.metadata.get("fastdream.format") == FILTER_FORMAT
        self._check_io()
        try:
            self.pad_multiple = max(1, int(self.metadata.get("fastdream.pad_multiple", "1" if self.is_fastdream else "8")))
        except ValueError:
            self.pad_multiple = 8
        self.last_ms = None

    def _check_io(self):
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1 or len(outs) < 1:
            raise InputError(f"{self.path}: not a picture filter (it takes {len(ins)} inputs; a filter takes one "
                             "[N, 3, H, W] picture)")
        i, o = ins[0], outs[0]

        def fits(arg):
            shape = arg.shape
            return (arg.type == "tensor(float)" and len(shape) == 4
                    and (not isinstance(shape[1], int) or shape[1] == 3))

        if not fits(i) or not fits(o):
            raise InputError(f"{self.path}: not a picture filter: input {i.name} {i.type} {i.shape}, output "
                             f"{o.name} {o.type} {o.shape} (a filter maps float32 [N, 3, H, W] to the same)")
        self.input_name, self.output_name = i.name, o.name
        self.fixed_size = tuple(v if isinstance(v, int) else None for v in i.shape[2:])

    @property
    def precision(self) -> str:
        """``int8`` for a filter quantized by ``fastdream export --int8`` (``fastdream.precision`` in its
        metadata), else ``float32``."""
        return "int8" if "fastdream.precision" in self.metadata else "float32"

    @property
    def teacher(self) -> dict:
        try:
            return json.loads(self.metadata.get("fastdream.teacher", "{}"))
        except ValueError:
            return {}

    @property
    def params(self) -> int | None:
        """Number of weights in the model (initializers), from the ONNX file."""
        if not hasattr(self, "_params"):
            try:
                import onnx

                m = onnx.load(str(self.path), load_external_data=False)
                self._params = int(sum(int(np.prod(t.dims)) for t in m.graph.initializer))
            except Exception:
                self._params = None
        return self._params

    # -- running --------------------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> np.ndarray:  # [N, 3, h, w] float32 -> same
        if any(f is not None for f in self.fixed_size) and tuple(x.shape[2:]) != self.fixed_size:
            raise InputError(f"{self.path}: this model takes only {self.fixed_size[0]}x{self.fixed_size[1]} pictures, "
                             f"got {x.shape[2]}x{x.shape[3]}")
        m = self.pad_multiple
        h, w = x.shape[2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        if y.shape[0] != x.shape[0] or y.shape[1] != 3 or y.shape[2:] != x.shape[2:]:
            raise InputError(f"{self.path}: the model returned shape {list(y.shape)} for an input of "
                             f"{list(x.shape)}; a filter keeps the shape")
        return y[:, :, :h, :w]

    def _run_tiled(self, x: np.ndarray) -> np.ndarray:
        """Overlapping tiles of ``tile`` pixels through the model, blended with the one tiler of fastdream
        (:mod:`fastdream.ops.tiling`: linear ramps over the overlaps, weights summing to one)."""
        from fastdream.ops.tiling import accumulate_tiles, extract_tiles, tile_layout

        img = torch.from_numpy(x)
        layout = tile_layout(x.shape[2], x.shape[3], tile=self.tile, overlap=self.tile_overlap)
        out = torch.zeros_like(img)
        for n in range(len(layout)):
            part = self._run(extract_tiles(img, layout, n, 1)[0].numpy())
            accumulate_tiles(torch.from_numpy(part)[None], layout, out, n)
        return out.numpy()

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        """``[N, 3, H, W]`` float32 in [0, 1] -> filtered, same shape (strength applied)."""
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"a filter takes pictures [N, 3, H, W], got {getattr(x, 'shape', type(x).__name__)}")
        if x.shape[2] < 1 or x.shape[3] < 1:
            raise InputError(f"a picture needs at least one pixel, got {x.shape[2]}x{x.shape[3]}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.strength == 0.0:
            self.last_ms = 0.0
            return x.copy()
        t0 = time.perf_counter()
        H, W = x.shape[2:]
        y = self._run_tiled(x) if H * W > self.max_pixels else self._run(x)
        self.last_ms = 1000 * (time.perf_counter() - t0)
        if self.strength != 1.0:
            y = x + self.strength * (y - x)
        return np.clip(y, 0.0, 1.0, out=y)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[1, 3, H, W]`` (or ``[N, 3, H, W]``) float tensor in [0, 1] -> the filtered tensor, same
        shape, dtype and device."""
        if not isinstance(x, torch.Tensor):
            raise InputError(f"FilterRunner takes a torch.Tensor [N, 3, H, W], got {type(x).__name__}")
        y = self.run_numpy(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(y).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)


def describe(runner: FilterRunner) -> str:
    """One line about a filter: what it was distilled from and how it runs."""
    t = runner.teacher
    what = ", ".join(v for v in (f"preset {t['preset']}" if t.get("preset") else "",
                                 f"objective {t['objective']}" if t.get("objective") else "") if v) \
        or "unknown teacher"
    kind = "fastdream filter" if runner.is_fastdream else "foreign ONNX model (no fastdream metadata)"
    return f"{runner.path.name}: {kind}, {what}, {runner.provider}"


def _env_threads() -> int | None:
    v = os.environ.get("FASTDREAM_ORT_THREADS")
    return int(v) if v and v.isdigit() else None


def load_filter(model=None, device: str = "auto", **kwargs) -> FilterRunner:
    """A :class:`FilterRunner` for ``model`` (None: the shipped filter); the entry point that
    ``fastdream video --filter`` and ``fastdream serve --filter`` look up."""
    return FilterRunner(model, device=device, **kwargs)
