"""Training the feed-forward generator on teacher pairs.

Loss per batch (``G`` the generator, ``x`` input crops, ``y`` the teacher's dreams of them)::

    pixel_weight * L1(G(x), y)
    + feature_weight * sum over taps l of  mean((f_l(G(x)) - f_l(y))^2) / mean(f_l(y)^2)
    + style_weight * sum over taps l of  mean((gram(f_l(G(x))) - gram(f_l(y)))^2) / mean(gram(f_l(y))^2)
    + objective_weight * shortfall(obj_p(G(x)), target * obj_p(y))    (the teacher's own objective,
          per patch p of ``objective_patch`` pixels, and per channel with ``objective_channels``)
    + objective_weight * shortfall(obj_p(G(u)), target * gain * obj_p(u))   (``unpaired`` photo crops u)
    + temporal_weight * L1 over the overlap of G(x) and G(x shifted by a few pixels)

where ``shortfall(a, b) = sum_p relu(b_p - a_p) / sum_p b_p`` and ``gain`` is the teacher's median
``obj(y) / obj(x)`` over the training pairs. The backbone sees every crop mirrored outwards by
``loss_margin`` pixels (so the generator's borders are trained like the rest, and frames along them
cannot feed on the backbone's zero padding); ``f_l`` are taps of the (frozen) default backbone.
Batches depend only on ``(seed, step, rank)``, and the learning rate only on the step (cosine decay),
so a run resumed from a checkpoint continues exactly as an uninterrupted one would. Under ``torchrun`` (``WORLD_SIZE > 1``) the same code trains
data-parallel with DistributedDataParallel (gloo on the CPU, NCCL on GPUs); rank 0 writes checkpoints.

Checkpoints hold tensors, numbers and JSON strings only (``torch.load(..., weights_only=True)`` reads
them): the generator's state, the optimizer's state, the step, the generator and training settings,
and the teacher's parameters from the dataset.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fastdream.distill.generator import ARCH, DreamGenerator, GeneratorConfig, count_params
from fastdream.precision import resolve_precision
from fastdream.errors import FastdreamError, InputError

CHECKPOINT_FORMAT = "fastdream-distill-checkpoint-v1"


@dataclasses.dataclass
class TrainConfig:
    steps: int = 2000
    batch: int = 8
    crop: int = 112
    lr: float = 3e-3
    min_lr_fraction: float = 0.05
    width: int = 16
    blocks: int = 4
    padding: str = "replicate"
    pixel_weight: float = 0.2
    feature_weight: float = 0.05
    feature_layers: list = dataclasses.field(default_factory=lambda: ["block2", "block5", "block9"])
    objective_weight: float = 4.0
    objective_target: float = 1.0  # the objective term is satisfied at this multiple of the teacher's objective
    objective_patch: int = 32      # ...in every patch of this many pixels (0: over the whole crop)
    objective_channels: bool = False  # ...and in every channel of a layer objective
    style_weight: float = 1.0   # Gram-matrix (texture statistics) loss against the teacher's dream
    style_layers: list = dataclasses.field(default_factory=lambda: ["block2", "block5", "block9"])
    loss_margin: int = 16       # the backbone terms see each crop mirrored outwards by this many pixels
    temporal_weight: float = 0.0
    temporal_shift: int = 6
    photos: str | None = None   # a folder of photos: `unpaired` more crops per step climb the objective only
    unpaired: int = 0
    val_every: int = 10         # pair i is held out when i % val_every == 0
    eval_every: int = 100
    save_every: int = 50
    seed: int = 0
    precision: str = "auto"     # the backbone's in the loss terms: auto | fp32 | bf16 | fp16

    def validate(self) -> None:
        for name in ("steps", "batch", "crop", "val_every", "eval_every", "save_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise FastdreamError(f"{name} must be a whole number >= 1, got {v!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise FastdreamError(f"learning rate must be positive, got {self.lr!r}")
        if not (0 < self.objective_target <= 10 and math.isfinite(self.objective_target)):
            raise FastdreamError(f"objective target must be in (0, 10], got {self.objective_target!r}")
        for name in ("pixel_weight", "feature_weight", "objective_weight", "style_weight", "temporal_weight"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise FastdreamError(f"{name} must be >= 0, got {v!r}")
        if not isinstance(self.loss_margin, int) or not 0 <= self.loss_margin < self.crop:
            raise FastdreamError(f"loss margin must be a whole number of pixels in 0..{self.crop - 1} (less than "
                                 f"the crop), got {self.loss_margin!r}")
        if not isinstance(self.objective_patch, int) or self.objective_patch < 0:
            raise FastdreamError(f"objective patch must be a whole number of pixels >= 0, got {self.objective_patch!r}")
        if not isinstance(self.unpaired, int) or self.unpaired < 0:
            raise FastdreamError(f"unpaired crops per step must be a whole number >= 0, got {self.unpaired!r}")
        if self.unpaired and not self.photos:
            raise FastdreamError("unpaired crops need a folder of photos (--photos)")
        if self.unpaired and self.objective_weight <= 0:
            raise FastdreamError("unpaired crops only climb the objective: they need --objective-weight > 0")
        if self.feature_weight > 0 and not self.feature_layers:
            raise FastdreamError("a feature loss needs at least one backbone layer")
        GeneratorConfig(self.width, self.blocks, self.padding).validate()

    def lr_at(self, step: int) -> float:
        t = min(1.0, step / max(1, self.steps))
        lo = self.lr * self.min_lr_fraction
        return lo + (self.lr - lo) * 0.5 * (1 + math.cos(math.pi * t))


# -- data ---------------------------------------------------------------------------------------------

class PairSet:
    """The pairs of a dataset folder in memory (uint8), split into training and held-out validation."""

    def __init__(self, folder, val_every: int = 10):
        from fastdream.distill.dataset import list_pairs, load_pair, read_teacher

        self.teacher = read_teacher(folder)
        pairs = list_pairs(folder)
        if not pairs:
            raise InputError(f"{folder}: no pairs yet (render some with `fastdream distill dataset`)")
        self.train_x, self.train_y, self.val_x, self.val_y = [], [], [], []
        for i, p in pairs.items():
            x, y = load_pair(p)
            if x.shape[-1] < 16 or x.shape[-2] < 16:
                raise InputError(f"{p}: pairs smaller than 16 pixels cannot be trained on")
            held = val_every > 1 and i % val_every == 0 and len(pairs) >= 2
            (self.val_x if held else self.train_x).append(x)
            (self.val_y if held else self.train_y).append(y)
        if not self.train_x:
            raise InputError(f"{folder}: every pair is held out for validation; render more pairs")
        self.min_size = min(min(t.shape[-2:]) for t in self.train_x)

    def batch(self, step: int, rank: int, size: int, crop: int, seed: int, margin: int = 0):
        """``(x, y)`` float ``[size, 3, crop + margin, crop + margin]``: random pairs, windows and flips,
        a function of ``(seed, step, rank)`` only."""
        rng = np.random.default_rng([seed, step, rank])
        c = crop + margin
        xs, ys = [], []
        for _ in range(size):
            k = int(rng.integers(len(self.train_x)))
            x, y = self.train_x[k], self.train_y[k]
            h, w = x.shape[-2:]
            oy, ox = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            xw, yw = x[:, oy:oy + c, ox:ox + c], y[:, oy:oy + c, ox:ox + c]
            if rng.random() < 0.5:
                xw, yw = xw.flip(-1), yw.flip(-1)
            xs.append(xw)
            ys.append(yw)
        return torch.stack(xs).float().div_(255), torch.stack(ys).float().div_(255)


class PhotoSet:
    """Photos for the unpaired crops: random scale, window, flips, quarter turns and colour changes.

    Nothing here needs the teacher: these crops only climb the teacher's objective (up to the gain
    the teacher reaches on the pairs), so a few photos give the generator many more pictures to learn
    from, at the scales it will meet, than the pairs alone (each pair costs an iterative dream).
    Grayscale photos are tinted; hues are rotated, so the colours of a handful of photos do not become
    the only colours the filter knows.
    """

    def __init__(self, folder, crop: int):
        from fastdream.distill.dataset import CropRecipe, list_photos
        from fastdream.imageio import load_image

        # crops cover 1/4 .. all of the short side: from close-ups to whole pictures
        self.recipe = CropRecipe(size=crop, min_fraction=0.25, max_fraction=1.0, flip=True, color_jitter=0.0)
        self.photos = []
        for f in list_photos(folder):
            x, _ = load_image(f)
            if min(x.shape[-2:]) < crop:
                raise InputError(f"{f}: {x.shape[-1]}x{x.shape[-2]} is smaller than the {crop}-pixel training crop")
            self.photos.append(x)

    def batch(self, step: int, rank: int, size: int, seed: int) -> torch.Tensor:
        """``[size, 3, crop, crop]`` in [0, 1], a function of ``(seed, step, rank)`` only."""
        from fastdream.distill.dataset import draw_crop

        rng = np.random.default_rng([seed, step, rank, 2])
        out = []
        for _ in range(size):
            c = draw_crop(self.photos, 0, self.recipe, rng=rng)[0][0]
            c = torch.rot90(c, int(rng.integers(4)), (1, 2))
            out.append(_recolour(c, rng).clamp(0, 1))
        return torch.stack(out).contiguous()


def _recolour(c: torch.Tensor, rng) -> torch.Tensor:
    """A random hue rotation (about the gray axis), saturation, brightness and contrast change of ``[3, h, w]``;
    gray pictures get a random tint."""
    gray = c.mean(0, keepdim=True)
    if float((c - gray).abs().mean()) < 1e-3:  # a grayscale photo: tint it
        tint = torch.from_numpy(rng.uniform(0.6, 1.4, size=(3, 1, 1))).float()
        c = gray * tint / tint.mean()
        gray = c.mean(0, keepdim=True)
    a = float(rng.uniform(-math.pi, math.pi))
    k = torch.tensor([1.0, 1.0, 1.0]) / math.sqrt(3)  # Rodrigues rotation about the gray axis
    K = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = torch.eye(3) + math.sin(a) * K + (1 - math.cos(a)) * (K @ K)
    c = torch.einsum("ij,jhw->ihw", R, c)
    sat = float(rng.uniform(0.7, 1.3))
    bright = float(rng.uniform(0.8, 1.2))
    contrast = float(rng.uniform(0.8, 1.2))
    gray = c.mean(0, keepdim=True)
    c = gray + (c - gray) * sat
    m = c.mean()
    return ((c - m) * contrast + m) * bright


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of pictures in [0, 1] (over the whole batch)."""
    mse = float(F.mse_loss(a, b))
    return 99.0 if mse <= 1e-10 else 10 * math.log10(1.0 / mse)


class FeatureLoss(torch.nn.Module):
    """Backbone-feature terms of the loss, from one forward pass of the output and one of the target.

    ``feature``: ``sum_l mean((f_l(out) - f_l(target))^2) / mean(f_l(target)^2)`` over ``layers``;
    ``style``: the same for Gram matrices over ``style_layers``;
    ``objective``: the shortfall of the teacher's objective ``obj`` (when given) on the output from
    ``target`` times its value on the teacher's dream, per patch (``patch_values``, ``_shortfall``): the
    output should climb as far as the teacher did, everywhere, and no further. Both pictures are
    mirrored outwards by ``margin`` pixels first (``pad``).
    """

    def __init__(self, backbone, layers, objective=None, margin: int = 0, style_layers=(), target: float = 1.0,
                 patch: int = 0, channels: bool = False, precision: str = "fp32"):
        super().__init__()
        self.precision = precision
        self.channels = bool(channels)
        self.target = float(target)
        self.patch = int(patch)
        self.backbone = backbone
        self.margin = int(margin)
        self.layers = [backbone.resolve_tap(l) for l in layers]
        self.style_layers = [backbone.resolve_tap(l) for l in style_layers]
        self.objective = objective
        self.taps = list(dict.fromkeys([*self.layers, *self.style_layers,
                                        *(sorted(objective.taps()) if objective is not None else [])]))

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> dict:  # [B, 3, h, w] each
        from fastdream.engine.objectives import Context

        out, target = self.pad(out), self.pad(target)
        with torch.no_grad():
            ft = self.backbone.forward_taps(target, self.taps, self.precision)
        fo = self.backbone.forward_taps(out, self.taps, self.precision)
        terms = {}
        if self.layers:
            total = out.new_zeros(())
            for l in self.layers:
                total = total + F.mse_loss(fo[l], ft[l]) / ft[l].pow(2).mean().clamp_min(1e-8)
            terms["feature"] = total
        if self.style_layers:
            total = out.new_zeros(())
            for l in self.style_layers:
                go, gt = gram(fo[l]), gram(ft[l])
                total = total + F.mse_loss(go, gt) / gt.pow(2).mean().clamp_min(1e-8)
            terms["style"] = total
        if self.objective is not None:
            ctx = Context(tuple(out.shape[-2:]))
            vo = self.patch_values(fo, ctx)  # [B, patches]
            with torch.no_grad():
                vt = self.patch_values(ft, ctx)
            terms["objective"] = _shortfall(vo, vt, self.target)
        return terms


    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` mirrored outwards by ``margin`` pixels: the backbone's zero padding sits ``margin`` pixels
        away from the crop, and what the generator puts along its borders is seen as ordinary content
        (frames that feed on the backbone's padding earn nothing), so the borders are trained like the
        rest of the picture."""
        m = min(self.margin, x.shape[-1] - 1, x.shape[-2] - 1)
        return F.pad(x, (m, m, m, m), mode="reflect") if m > 0 else x

    def climb(self, out: torch.Tensor, inp: torch.Tensor, gain: float) -> torch.Tensor:
        """The objective term for crops without a teacher dream: the shortfall of ``obj(out)`` from
        ``target * gain * obj(inp)`` per patch, ``gain`` being the teacher's typical ``obj(dream) / obj(input)``."""
        from fastdream.engine.objectives import Context

        out, inp = self.pad(out), self.pad(inp)
        ctx = Context(tuple(out.shape[-2:]))
        taps = sorted(self.objective.taps())
        with torch.no_grad():
            vi = self.patch_values(self.backbone.forward_taps(inp, taps, self.precision), ctx)
        vo = self.patch_values(self.backbone.forward_taps(out, taps, self.precision), ctx)
        return _shortfall(vo, vi * gain, self.target)

    def patch_values(self, acts: dict, ctx) -> torch.Tensor:
        """The objective per patch of about ``self.patch`` pixels, ``[B, patches]`` (``[B, 1]`` with patch 0).

        Spatial terms are averaged over each patch; other terms (class logits...) count in every patch.
        Asking every patch to reach the teacher's level (rather than the crop on average) rules out the
        cheap way up: a few huge, identical blobs that lift the mean while the rest stays as it was.
        """
        from fastdream.engine.objectives import Layer, Spatial, Sum, _layer_value

        if self.patch <= 0 and not self.channels:
            return self.objective(acts, ctx)[:, None]
        h, w = ctx.full_size
        grid = (1, 1) if self.patch <= 0 else (max(1, round(h / self.patch)), max(1, round(w / self.patch)))
        terms = self.objective.terms if isinstance(self.objective, Sum) else [(1.0, self.objective)]
        total = None
        for wt, o in terms:
            if self.channels and isinstance(o, Layer) and acts[o.layer].dim() == 4:
                # one value per channel and patch: [B, C * gh * gw]
                v = _layer_value(acts[o.layer].unsqueeze(1), o.kind) / acts[o.layer].shape[1]
                v = F.adaptive_avg_pool2d(v, grid).flatten(1)
            elif isinstance(o, Spatial):
                v = o.value_map(acts[o.layer], ctx)
                v = F.adaptive_avg_pool2d(v[:, None], grid).flatten(1)  # [B, gh * gw]
            else:
                v = o(acts, ctx)[:, None]
            total = wt * v if total is None else total + wt * v
        return total

    @torch.no_grad()
    def teacher_gain(self, pairs: "PairSet", crop: int) -> float:
        """The median over the training pairs of ``obj(dream) / obj(input)`` on a centred ``crop`` window
        (padded like the training crops)."""
        from fastdream.engine.objectives import Context

        taps, ratios = sorted(self.objective.taps()), []
        for x, y in zip(pairs.train_x, pairs.train_y):
            x, y = x[None].float().div_(255), y[None].float().div_(255)
            h, w = x.shape[-2:]
            oy, ox = (h - crop) // 2, (w - crop) // 2
            x, y = self.pad(x[..., oy:oy + crop, ox:ox + crop]), self.pad(y[..., oy:oy + crop, ox:ox + crop])
            ctx = Context(tuple(x.shape[-2:]))
            vx = self.objective(self.backbone.forward_taps(x, taps), ctx)
            vy = self.objective(self.backbone.forward_taps(y, taps), ctx)
            ratios.extend((vy / vx.abs().clamp_min(1e-8)).tolist())
        return float(np.median(ratios))


def _shortfall(vo: torch.Tensor, vt: torch.Tensor, target: float) -> torch.Tensor:
    """The shortfall of ``vo`` from ``target * vt``, ``[B, K]`` each (K patches, or channels x patches):
    ``sum_k relu(target * vt - vo) / sum_k target * vt`` per picture, averaged over the batch. 0 when
    every part reaches the target; an excess in one part does not make up for another; parts where the
    teacher has little (a black sky) weigh little."""
    want = target * vt.abs()
    return (F.relu(want - vo).sum(1) / want.sum(1).clamp_min(1e-8)).mean()


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``[B, C, C]`` of features ``[B, C, h, w]`` (averaged over positions)."""
    b, c = f.shape[:2]
    f = f.reshape(b, c, -1)
    return f @ f.transpose(1, 2) / f.shape[-1]


# -- checkpoints --------------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, step: int, cfg: TrainConfig, teacher: dict, history: list) -> None:
    from fastdream.imageio import atomic_write

    state = {
        "format": CHECKPOINT_FORMAT,
        "arch": ARCH,
        "generator": json.dumps(dataclasses.asdict(model.config)),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "step": int(step),
        "train_config": json.dumps(dataclasses.asdict(cfg)),
        "teacher": json.dumps(teacher, default=str),
        "history": json.dumps(history),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_checkpoint(path) -> dict:
    """A checkpoint's contents, with the JSON fields decoded; clear errors for anything else."""
    p = pathlib.Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such checkpoint")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or pickled objects
        from fastdream.backbones.loading import load_error_reason

        raise InputError(f"{p}: not a fastdream filter checkpoint: {load_error_reason(e)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{p}: not a fastdream filter checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if state.get("arch") != ARCH:
        raise InputError(f"{p}: a checkpoint of architecture {state.get('arch')!r}; this fastdream trains {ARCH!r}")
    out = dict(state)
    for k in ("generator", "train_config", "teacher", "history"):
        out[k] = json.loads(state.get(k) or "null")
    return out


def load_generator(path) -> tuple[DreamGenerator, dict]:
    """The generator of a checkpoint (eval mode) and the checkpoint's contents."""
    ck = read_checkpoint(path)
    try:
        model = DreamGenerator(GeneratorConfig(**ck["generator"]))
        model.load_state_dict(ck["model"], strict=True)
    except (TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(f"{path}: the weights do not fit the {ARCH} generator ({first[:160]})") from None
    return model.eval(), ck


# -- the loop -----------------------------------------------------------------------------------------

def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return world, rank


@torch.no_grad()
def validate(model, pairs: PairSet) -> dict:
    """L1 and PSNR of the generator against the teacher on the held-out pairs (and the input's PSNR)."""
    if not pairs.val_x:
        return {}
    outs, ys, xs = [], [], []
    for i in range(0, len(pairs.val_x), 8):
        x = torch.stack(pairs.val_x[i:i + 8]).float().div_(255)
        y = torch.stack(pairs.val_y[i:i + 8]).float().div_(255)
        outs.append(model(x))
        ys.append(y)
        xs.append(x)
    o, y, x = torch.cat(outs), torch.cat(ys), torch.cat(xs)
    return {"val_pairs": len(pairs.val_x), "val_l1": float(F.l1_loss(o, y)), "val_psnr_db": psnr(o, y),
            "val_input_psnr_db": psnr(x, y)}


def train(data, output, cfg: TrainConfig | None = None, *, resume: bool = False, backbone=None,
          progress: bool | Callable[[int, int], None] = False, log=None) -> dict:
    """Train a generator on the pairs in ``data``; the checkpoint goes to ``output`` (.pt).

    >>> from fastdream.distill.train import TrainConfig, train
    >>> train("pairs/", "filter.pt", TrainConfig(steps=2000))
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    world, rank = _dist()
    out = pathlib.Path(output)
    if out.suffix.lower() not in (".pt", ".pth"):
        raise InputError(f"{out}: a checkpoint is written as .pt (or .pth)")
    if not out.parent.is_dir() and str(out.parent):
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    if out.exists() and not resume:
        raise InputError(f"{out}: exists; pass --resume to continue training it, or choose another name")
    pairs = PairSet(data, cfg.val_every)
    photos = PhotoSet(cfg.photos, cfg.crop) if cfg.unpaired else None
    margin = cfg.temporal_shift if cfg.temporal_weight > 0 else 0
    if cfg.crop + margin > pairs.min_size:
        raise InputError(f"--crop {cfg.crop} (+{margin} for the temporal shift) is larger than the smallest "
                         f"pair ({pairs.min_size} pixels)")
    if log is None:
        def log(msg):
            if rank == 0:
                print(msg, file=sys.stderr, flush=True)

    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("FASTDREAM_DDP_BACKEND") == "nccl" else "gloo"
        torch.distributed.init_process_group(backend)
    torch.manual_seed(cfg.seed)
    model = DreamGenerator(GeneratorConfig(cfg.width, cfg.blocks, cfg.padding))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, history = 0, []
    if resume and out.exists():
        ck = read_checkpoint(out)
        if ck["generator"] != dataclasses.asdict(model.config):
            raise InputError(f"{out}: trained with generator {ck['generator']}, not {dataclasses.asdict(model.config)}")
        model.load_state_dict(ck["model"])
        if ck["optimizer"]:
            opt.load_state_dict(ck["optimizer"])
        start, history = int(ck["step"]), list(ck["history"] or [])
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)

    feat = None
    teacher = pairs.teacher.get("teacher", {})
    if cfg.feature_weight > 0 or cfg.objective_weight > 0 or cfg.style_weight > 0:
        from fastdream.api import get_backbone

        bb = get_backbone(backbone, "cpu")
        objective = None
        if cfg.objective_weight > 0:
            from fastdream.engine.spec import build_objective

            spec = teacher.get("objective_spec") or {}
            if spec.get("guide"):
                raise InputError("--objective-weight: guide-image teachers are not supported; use 0")
            objective = build_objective(bb, (cfg.crop, cfg.crop), layers=spec.get("layers") or [],
                                        channels=spec.get("channels") or [], neurons=spec.get("neurons") or [],
                                        classes=spec.get("classes") or [])
            if objective is None:
                raise InputError(f"{data}: teacher.json names no objective (objective_spec); use --objective-weight 0")
        feat = FeatureLoss(bb, cfg.feature_layers if cfg.feature_weight > 0 else [], objective,
                           margin=cfg.loss_margin, style_layers=cfg.style_layers if cfg.style_weight > 0 else [],
                           target=cfg.objective_target, patch=cfg.objective_patch,
                           channels=cfg.objective_channels,
                           precision=resolve_precision(cfg.precision, bb.mean.device))
    gain = feat.teacher_gain(pairs, min(cfg.crop, pairs.min_size)) if photos is not None else None
    if gain is not None:
        log(f"teacher gain on the training pairs (median obj(dream) / obj(input)): {gain:.3f}")
    t0 = time.perf_counter()
    update = None
    bar_ctx = None
    if progress is True and rank == 0:
        from fastdream.cli.common import progress_bar

        bar_ctx = progress_bar(cfg.steps, "train")
        update = bar_ctx.__enter__()
    elif callable(progress):
        update = progress
    last = {}
    try:
        model.train()
        for step in range(start, cfg.steps):
            for g in opt.param_groups:
                g["lr"] = cfg.lr_at(step)
            x, y = pairs.batch(step, rank, cfg.batch, cfg.crop, cfg.seed, margin)
            c = cfg.crop
            xa, ya = x[..., :c, :c], y[..., :c, :c]
            if photos is not None:  # one forward pass for both kinds of crops (one DDP reduction)
                xu = photos.batch(step, rank, cfg.unpaired, cfg.seed)
                o_all = net(torch.cat([xa, xu]))
                o, ou = o_all[:len(xa)], o_all[len(xa):]
            else:
                o = net(xa)
            loss_pix = F.l1_loss(o, ya)
            loss = cfg.pixel_weight * loss_pix
            terms = {"pixel": float(loss_pix.detach())}
            if feat is not None:
                weights = {"feature": cfg.feature_weight, "objective": cfg.objective_weight, "style": cfg.style_weight}
                for name, v in feat(o, ya).items():
                    loss = loss + weights[name] * v
                    terms[name] = float(v.detach())
            if photos is not None:
                lu = feat.climb(ou, xu, gain)
                loss = loss + cfg.objective_weight * lu
                terms["unpaired"] = float(lu.detach())
            if margin:
                rng = np.random.default_rng([cfg.seed, step, rank, 1])
                dy, dx = (int(v) for v in rng.integers(1, margin + 1, size=2))
                ob = net(x[..., dy:dy + c, dx:dx + c])
                lt = F.l1_loss(o[..., dy:, dx:], ob[..., :c - dy, :c - dx])
                loss = loss + cfg.temporal_weight * lt
                terms["temporal"] = float(lt.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            terms["loss"] = float(loss.detach())
            last = terms
            done = step + 1
            if done % cfg.eval_every == 0 or done == cfg.steps:
                model.eval()
                v = validate(model, pairs) if rank == 0 else {}
                model.train()
                history.append({"step": done, **{k: round(val, 5) for k, val in terms.items()},
                                **{k: (round(val, 4) if isinstance(val, float) else val) for k, val in v.items()}})
                log(f"step {done}/{cfg.steps}: loss {terms['loss']:.4f}"
                    + (f", held-out PSNR {v['val_psnr_db']:.2f} dB (input {v['val_input_psnr_db']:.2f})" if v else ""))
            if rank == 0 and (done % cfg.save_every == 0 or done == cfg.steps):
                save_checkpoint(out, model, opt, done, cfg, teacher, history)
            if update is not None:  # after the save: an interruption here loses nothing
                update(done, cfg.steps)
    finally:
        if bar_ctx is not None:
            bar_ctx.__exit__(None, None, None)
    seconds = time.perf_counter() - t0
    model.eval()
    final = validate(model, pairs) if rank == 0 else {}
    if world > 1:
        torch.distributed.barrier()
    return {"output": str(out), "rank": rank, "world_size": world, "steps": cfg.steps, "start_step": start,
            "seconds": round(seconds, 3), "seconds_per_step": round(seconds / max(1, cfg.steps - start), 4),
            "params": count_params(model), "train_pairs": len(pairs.train_x), "last_losses": last, **final,
            **({"unpaired_photos": len(photos.photos), "teacher_gain": round(gain, 4)} if photos is not None else {}),
            "config": dataclasses.asdict(cfg), "teacher": teacher, "peak_rss_mb": _rss()}


def _rss():
    from fastdream.report import peak_rss_mb

    return round(peak_rss_mb(), 1)
