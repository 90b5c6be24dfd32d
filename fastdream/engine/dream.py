"""The DeepDream loop: octaves with detail re-injection, jitter, tiling for any size, the fused step.

Data flow of one step (docs/architecture.md): picture -> jitter shift chosen -> backbone forward with taps
(on the rolled picture, whole or tile by tile) -> objective -> autograd gives the gradient of the rolled
picture -> ``ops.dream_step`` smooths, normalizes, steps, clamps and un-rolls it in one pass, in place.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

from fastdream import ops
from fastdream.engine.objectives import Context, Objective, Sum
from fastdream.errors import FastdreamError

NORMS = ("mean_abs", "std", "none")
# evaluate() measures a picture the same way whatever the dream's tiling (--tile, --max-tile-pixels): in one
# pass up to EVAL_PIXELS (no gradient is kept: 4 Mpx took 1.0 GB above the process on the CPU, a default
# 1-Mpx dream step 1.4 GB), larger pictures on fixed EVAL_TILE tiles, so objective_before/after compare
# across runs.
EVAL_PIXELS = 4 * 1024 * 1024
EVAL_TILE, EVAL_OVERLAP = 2048, 128


BOX_STEPS = ("auto", "picture", "sqrt", "area")


@dataclasses.dataclass
class DreamConfig:
    """Every knob of a dream. Defaults make a good dream of a photo on the default backbone."""

    octaves: int = 4                  # pyramid levels, coarse to fine
    octave_scale: float = 1.4         # size ratio between levels
    steps: int = 10                   # gradient steps per octave
    step_size: float = 0.012          # in units of the normalized gradient; pixels are in [0, 1]
    jitter: int = 32                  # random roll of up to +-jitter pixels each step
    sigma: float | tuple[float, ...] | None = None   # gradient smoothing (one sigma or a cascade)
    smooth_kernel: int | None = None  # kernel size of the smoothing (default 2*ceil(3*sigma)+1)
    norm: str = "mean_abs"            # gradient normalization: mean_abs | std | none
    lower: float | tuple[float, ...] = 0.0   # clamp bounds (per channel allowed)
    upper: float | tuple[float, ...] = 1.0
    tile: int | None = None           # tile size; None = automatic (tiles only above max_tile_pixels)
    tile_overlap: int = 64
    max_tile_pixels: int = 1024 * 1024  # pictures larger than this are dreamed tile by tile (memory);
    #                                     in fp32: bf16/fp16 activations take half the bytes, so twice the pixels
    min_octave_size: int = 48         # the smallest octave keeps at least this many pixels per side
    init: str = "image"               # image | noise
    seed: int | None = 0
    recursions: int = 0               # dream, rescale, blend with the original, dream again...
    recursion_scale: float = 0.85
    recursion_blend: float = 0.15
    channels_last: bool = True
    finish_steps: int | None = None   # with max_size (dream_tensor): steps at full size after the detail
    #                                   is added back; None: half the steps per octave (rounded up); 0: none
    precision: str = "auto"           # the backbone's: auto | fp32 | bf16 | fp16 (see fastdream.precision)
    # colour-decorrelated steps: the gradient's colour is mapped through the photos' colour covariance
    # (engine.colour.COLOR_MATRIX M: M M^T g), so steps change brightness and natural hues rather than
    # single channels (no rainbow noise). None: on where an objective draws objects in a zoomed view
    # (BoxView, Face), off otherwise (the classic DeepDream look).
    decorrelate: bool | None = None
    # the step where every objective is regional (classes and faces in boxes, masked objectives): "picture"
    # normalizes the gradient over the whole picture, so a box covering a fifth of it moves five times as
    # fast as a whole-picture dream (strong objects, with colour noise); "area" scales the step by the
    # boxes' share of the picture (subtle, faint objects); "sqrt" by the square root of that share (between
    # the two); "auto": sqrt where objects are drawn in boxes (BoxView, Face), picture for masked
    # objectives (docs/priors.md, "The step in a box")
    box_step: str = "auto"

    def validate(self) -> None:
        def bad(msg):
            raise FastdreamError(msg)

        if self.box_step not in BOX_STEPS:
            bad(f"box step must be one of {', '.join(BOX_STEPS)}, got {self.box_step!r}")

        if not isinstance(self.octaves, int) or self.octaves < 1:
            bad(f"octaves must be a whole number >= 1, got {self.octaves!r}")
        if not (self.octave_scale > 1.0 and math.isfinite(self.octave_scale)):
            bad(f"octave scale must be > 1, got {self.octave_scale!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            bad(f"steps must be a whole number >= 0, got {self.steps!r}")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            bad(f"step size must be a positive number, got {self.step_size!r}")
        if not isinstance(self.jitter, int) or self.jitter < 0:
            bad(f"jitter must be a whole number >= 0, got {self.jitter!r}")
        sig = self.sigmas()
        if any(not (math.isfinite(s) and s >= 0) for s in sig):
            bad(f"smoothing sigma must be >= 0, got {self.sigma!r}")
        if len(sig) > 4:
            bad(f"at most 4 smoothing sigmas, got {len(sig)}")
        if self.smooth_kernel is not None and (self.smooth_kernel < 1 or self.smooth_kernel % 2 == 0):
            bad(f"smoothing kernel size must be odd and >= 1, got {self.smooth_kernel!r}")
        if self.norm not in NORMS:
            bad(f"unknown normalization {self.norm!r}; choose from {', '.join(NORMS)}")
        if self.tile is not None and self.tile < 32:
            bad(f"tile size must be >= 32 pixels, got {self.tile!r}")
        if self.tile_overlap < 0 or (self.tile is not None and self.tile_overlap >= self.tile):
            bad(f"tile overlap must be >= 0 and smaller than the tile, got {self.tile_overlap!r}")
        from fastdream.precision import PRECISIONS

        if str(self.precision).lower() not in PRECISIONS:
            bad(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.init not in ("image", "noise"):
            bad(f"init must be 'image' or 'noise', got {self.init!r}")
        if self.finish_steps is not None and (not isinstance(self.finish_steps, int) or self.finish_steps < 0):
            bad(f"finish steps must be a whole number >= 0, got {self.finish_steps!r}")
        if not isinstance(self.recursions, int) or self.recursions < 0:
            bad(f"recursions must be a whole number >= 0, got {self.recursions!r}")
        if not 0 < self.recursion_scale <= 1:
            bad(f"recursion scale must be in (0, 1], got {self.recursion_scale!r}")
        if not 0 <= self.recursion_blend <= 1:
            bad(f"recursion blend must be in [0, 1], got {self.recursion_blend!r}")

    def sigmas(self) -> tuple[float, ...]:
        if self.sigma is None:
            return ()
        if isinstance(self.sigma, (int, float)):
            return () if self.sigma == 0 else (float(self.sigma),)
        return tuple(float(s) for s in self.sigma)


@dataclasses.dataclass
class DreamStats:
    steps_done: int = 0
    skipped_steps: int = 0            # steps whose gradient had NaN/inf (left the picture unchanged)
    tiles_per_step: list = dataclasses.field(default_factory=list)
    octave_sizes: list = dataclasses.field(default_factory=list)
    precision: str = "fp32"           # the backbone's precision actually used


def colour_preconditioner() -> torch.Tensor:
    """``M M^T`` ``[3, 3]`` for the photos' colour matrix M (engine.colour), scaled so its largest column
    has norm 1: maps a gradient's colour onto the directions along which photos vary."""
    from fastdream.engine.colour import COLOR_MATRIX

    p = COLOR_MATRIX @ COLOR_MATRIX.T
    return p / p.norm(dim=0).max()


def decorrelate_gradient(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` ``[B, 3, H, W]`` with its colour preconditioned (see ``colour_preconditioner``)."""
    p = colour_preconditioner().to(grad.device, grad.dtype)
    return torch.einsum("ij,bjhw->bihw", p, grad).contiguous()


def octave_sizes(h: int, w: int, octaves: int, scale: float, min_size: int) -> list[tuple[int, int]]:
    """Sizes from the finest (the picture) to the coarsest octave."""
    sizes = [(h, w)]
    for i in range(1, octaves):
        nh, nw = max(1, round(h / scale**i)), max(1, round(w / scale**i))
        if min(nh, nw) < min_size:
            break
        sizes.append((nh, nw))
    return sizes


def _objective_terms(objective: Objective):
    return objective.terms if isinstance(objective, Sum) else [(1.0, objective)]


def all_regional(objective: Objective) -> bool:
    """Every term works in a region (``pixel_mask``: classes and faces in boxes, masked objectives)."""
    terms = _objective_terms(objective)
    return bool(terms) and all(hasattr(o, "pixel_mask") for _, o in terms)


def resolved_box_step(objective: Objective, box_step: str = "auto") -> str:
    """The step a dream of ``objective`` takes (``DreamConfig.box_step``): "picture" unless every term is
    regional; "auto" is "sqrt" where objects are drawn in boxes (``BoxView``, ``Face``), else "picture"."""
    if not all_regional(objective):
        return "picture"
    if box_step == "auto":
        return "sqrt" if any(getattr(o, "whole_picture", False) for _, o in _objective_terms(objective)) else "picture"
    return box_step


class Dreamer:
    """Runs dreams of one objective on one backbone. Reusable across pictures."""

    def __init__(self, backbone, objective: Objective, config: DreamConfig | None = None):
        self.backbone = backbone
        self.objective = objective
        self.config = config or DreamConfig()
        self.config.validate()
        self.taps = sorted(objective.taps())
        dec = self.config.decorrelate
        if dec is None:
            dec = any(getattr(o, "whole_picture", False) for _, o in self._terms())
        self.decorrelate = bool(dec)
        self.box_step = resolved_box_step(objective, self.config.box_step)
        from fastdream.precision import resolve_precision

        self.precision = resolve_precision(self.config.precision, backbone.mean.device)

    # -- objective and gradient -----------------------------------------------------------------
    def _terms(self, whole_picture: bool | None = None):
        """The objective's weighted terms; ``whole_picture`` True/False: only the terms that need (do not
        need) the whole picture at once (``BoxView``: a zoomed view of a region), None: all."""
        terms = _objective_terms(self.objective)
        if whole_picture is None:
            return terms
        return [(w, o) for w, o in terms if bool(getattr(o, "whole_picture", False)) == whole_picture]

    def _value_and_grad(self, x: torch.Tensor, ctx: Context, terms=None):
        """(objective value summed over the batch, its gradient w.r.t. ``x``). A term restricted to a
        region changes only the pixels of that region: its gradient is computed on its own and masked in
        picture space too (the activations' receptive fields reach far beyond the region)."""
        terms = self._terms() if terms is None else terms
        ctx.backbone = self.backbone
        regional = [hasattr(o, "pixel_mask") for _, o in terms]
        xin = x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x
        ctx.image = x
        taps = sorted(set().union(*(o.taps() for _, o in terms))) if terms else []
        acts = self.backbone.forward_taps(xin, taps, self.precision) if taps else {}
        if not any(regional):
            value = sum((w * o(acts, ctx)).sum() for w, o in terms)
            (g,) = torch.autograd.grad(value, x)
            return value, g
        total, grad = 0.0, torch.zeros_like(x)
        for i, ((w, o), masked) in enumerate(zip(terms, regional)):
            v = (w * o(acts, ctx)).sum()
            (g,) = torch.autograd.grad(v, x, retain_graph=i < len(terms) - 1, allow_unused=True)
            if g is not None:
                grad += g * o.pixel_mask(ctx, x.device) if masked else g
            total = total + v.detach()
        return total, grad

    def _forward(self, x: torch.Tensor, ctx: Context, terms=None) -> torch.Tensor:
        """Objective values ``[B]`` of the network input ``x`` (the rolled picture or a tile)."""
        terms = self._terms() if terms is None else terms
        xin = x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x
        ctx.image, ctx.backbone = x, self.backbone
        taps = sorted(set().union(*(o.taps() for _, o in terms))) if terms else []
        acts = self.backbone.forward_taps(xin, taps, self.precision) if taps else {}
        return sum(w * o(acts, ctx) for w, o in terms)

    def _layout(self, h: int, w: int, offset=(0, 0)):
        cfg = self.config
        tile = cfg.tile
        if tile is None:
            budget = cfg.max_tile_pixels * (1 if self.precision == "fp32" else 2)  # same bytes of activations
            if h * w <= budget:
                return None
            tile = ops.auto_tile(h, w, budget, cfg.tile_overlap)  # (th, tw): the least work
            return ops.tile_layout(h, w, tile, min(cfg.tile_overlap, min(tile) - 1), offset=offset)
        return ops.tile_layout(h, w, tile, min(cfg.tile_overlap, tile - 1), offset=offset)

    def gradient(self, img: torch.Tensor, shift=(0, 0), tile_offset=(0, 0), grad_out=None, generator=None):
        """Gradient of the objective w.r.t. ``torch.roll(img, shift)`` (what dream_step expects), and
        the objective value (mean over tiles) as a 0-d tensor on the picture's device: reading it is
        the caller's choice, so a step does not wait for the device. ``img``: ``[1, 3, H, W]``.
        ``generator``: the random draws of terms that augment what they see (``BoxView``)."""
        H, W = img.shape[-2:]
        rolled = torch.roll(img, shifts=shift, dims=(2, 3)) if shift != (0, 0) else img
        layout = self._layout(H, W, tile_offset)
        if layout is None:
            x = rolled.detach().requires_grad_(True)
            value, g = self._value_and_grad(x, Context((H, W), shift, generator=generator))
            return g.contiguous(), value.detach()  # channels-last backbones give NHWC gradients
        grad = grad_out if grad_out is not None else torch.empty_like(img)
        grad.zero_()
        total = torch.zeros((), device=img.device)
        tiled = self._terms(whole_picture=False)
        for n in range(len(layout)) if tiled else ():
            tile = ops.extract_tiles(rolled, layout, start=n, count=1)[0]  # [1, 3, th, tw]
            ty, tx = layout.ys[n // len(layout.xs)], layout.xs[n % len(layout.xs)]
            x = tile.requires_grad_(True)
            value, g = self._value_and_grad(x, Context((H, W), shift, (ty, tx, layout.tile_h, layout.tile_w),
                                                       generator=generator), tiled)
            ops.accumulate_tiles(g.contiguous()[None], layout, grad, start=n)
            total += value.detach()
        total = total / len(layout)
        whole = self._terms(whole_picture=True)
        if whole:  # terms that see a zoomed view of a region: once, on the whole picture
            x = rolled.detach().requires_grad_(True)
            value, g = self._value_and_grad(x, Context((H, W), shift, generator=generator), whole)
            grad += g
            total = total + value.detach()
        return grad, total

    @torch.no_grad()
    def evaluate(self, img: torch.Tensor) -> float:
        """The objective on ``img`` without jitter, at full size, with the backbone in fp32 whatever the
        dream's precision and in one pass (fixed tiles above ``EVAL_PIXELS``) whatever the dream's tiling,
        so figures compare across precisions and tilings."""
        dream_precision, self.precision = self.precision, "fp32"
        try:
            return self._evaluate(img)
        finally:
            self.precision = dream_precision

    def _evaluate(self, img: torch.Tensor) -> float:
        H, W = img.shape[-2:]
        layout = None if H * W <= EVAL_PIXELS else ops.tile_layout(H, W, EVAL_TILE, EVAL_OVERLAP)
        if layout is None:
            return float(self._forward(img, Context((H, W))).sum())
        total = 0.0
        tiled, whole = self._terms(whole_picture=False), self._terms(whole_picture=True)
        for n in range(len(layout)) if tiled else ():
            tile = ops.extract_tiles(img, layout, start=n, count=1)[0]
            ty, tx = layout.ys[n // len(layout.xs)], layout.xs[n % len(layout.xs)]
            total += float(self._forward(tile, Context((H, W), (0, 0), (ty, tx, layout.tile_h, layout.tile_w)),
                                         tiled).sum())
        total /= len(layout)
        if whole:
            total += float(self._forward(img, Context((H, W)), whole).sum())
        return total

    # -- the loop -------------------------------------------------------------------------------
    def run(self, image: torch.Tensor, progress: Callable[[int, int], None] | None = None,
            on_octave: Callable[[int, torch.Tensor], None] | None = None,
            consume: bool = False) -> tuple[torch.Tensor, DreamStats]:
        """Dream ``image`` (``[1, 3, H, W]`` float32 in [0, 1]); returns a new tensor and statistics.

        ``progress(done, total)`` is called after every step; ``on_octave(i, picture)`` after each octave.
        ``consume=True`` lets the dream work in ``image``'s own memory when it can (one octave, no
        recursion): a big picture then needs one copy fewer.
        """
        cfg = self.config
        if image.dim() != 4 or image.shape[0] != 1 or image.shape[1] != 3:
            raise FastdreamError(f"expected a picture [1, 3, H, W], got shape {tuple(image.shape)}")
        gen = torch.Generator().manual_seed(cfg.seed if cfg.seed is not None else torch.seed())
        original = image.detach().float().contiguous()
        if cfg.init == "noise":
            noise = torch.rand(original.shape, generator=gen).mul_(0.2).add_(0.4)
            start = noise.to(original.device)
        else:
            start = original
        stats = DreamStats(precision=self.precision)
        rounds = cfg.recursions + 1
        regional = cfg.init == "image" and self._all_regional()
        sizes = octave_sizes(*original.shape[-2:], cfg.octaves, cfg.octave_scale, cfg.min_octave_size)
        total = rounds * len(sizes) * cfg.steps
        done = 0
        current = start
        for r in range(rounds):
            if r > 0:  # the recursion variant: rescale the dream, blend in the original, dream again
                h, w = current.shape[-2:]
                small = ops.resample(current, (max(1, round(h * cfg.recursion_scale)), max(1, round(w * cfg.recursion_scale))),
                                     mode="bicubic", antialias=True)
                current = ops.resample(small, (h, w), mode="bicubic").clamp_(0, 1)
                current.mul_(1 - cfg.recursion_blend).add_(original, alpha=cfg.recursion_blend)
            own = (consume and rounds == 1 and cfg.init == "image" and current.data_ptr() == image.data_ptr()
                   and not regional)
            current, done = self._octaves(current, sizes, gen, stats, progress, on_octave, done, total, own)
        if regional:
            # every term is regional: outside the regions the picture stays exactly as it was (the
            # octaves' upsampling would otherwise carry a pixel of detail across the edges)
            region = self._region(*original.shape[-2:], current.device)
            base = original.to(current.device)
            current = base + (current - base) * region
        return current, stats

    def _all_regional(self) -> bool:
        return all_regional(self.objective)

    def _region(self, H: int, W: int, device) -> torch.Tensor:
        """The union of the regional terms' pixel masks at ``(H, W)``: ``[H, W]`` in [0, 1]."""
        return torch.stack([o.pixel_mask(Context((H, W)), device) for _, o in self._terms()]).amax(0)

    def _octaves(self, picture, sizes, gen, stats, progress, on_octave, done, total, own=False):
        cfg = self.config
        # bases[i] is the picture at sizes[i]; each coarser level is resampled from the full picture
        bases = [picture]
        for s in sizes[1:]:
            bases.append(ops.resample(picture, s, mode="bilinear", antialias=True))
        stats.octave_sizes = [list(s) for s in sizes]
        detail = None
        img = None
        for level in range(len(sizes) - 1, -1, -1):
            base = bases[level]
            if detail is None:
                img = base if (own and len(sizes) == 1) else base.clone()
            else:
                img = ops.octave_upsample_add(detail, base, mode="bilinear")
            H, W = img.shape[-2:]
            norms = []
            grad_buf = None
            step_size = cfg.step_size
            if self.box_step != "picture":  # the step scaled by the regions' share
                share = float(self._region(H, W, img.device).mean())
                step_size = cfg.step_size * (share if self.box_step == "area" else math.sqrt(share))
            for _ in range(cfg.steps):
                j = cfg.jitter
                if j > 0:
                    dy, dx = (int(v) for v in torch.randint(-j, j + 1, (2,), generator=gen))
                else:
                    dy, dx = 0, 0
                to = tuple(int(v) for v in torch.randint(0, 1 << 16, (2,), generator=gen))
                grad, _ = self.gradient(img, (dy, dx), to, grad_out=grad_buf, generator=gen)
                layout = self._layout(H, W, to)
                stats.tiles_per_step.append(1 if layout is None else len(layout))
                if grad.shape == img.shape and grad_buf is None and self._layout(H, W) is not None:
                    grad_buf = grad
                if self.decorrelate:
                    grad = decorrelate_gradient(grad)
                norms.append(ops.dream_step(img, grad, step_size=step_size, sigma=cfg.sigmas() or None,
                                            kernel_size=cfg.smooth_kernel, norm=cfg.norm, lower=cfg.lower,
                                            upper=cfg.upper, shift=(dy, dx)))
                done += 1
                if progress is not None:
                    progress(done, total)
            if norms:
                stats.skipped_steps += int(torch.isnan(torch.cat(norms)).sum())
                stats.steps_done += len(norms)
            if on_octave is not None:
                on_octave(len(sizes) - 1 - level, img)
            if level > 0:
                detail = img.sub_(base)  # reuse the picture's buffer for the detail
            del grad_buf
        return img, done


def dream_tensor(x: torch.Tensor, objective: Objective, backbone, cfg: DreamConfig, max_size: int | None = None,
                 progress=None, on_octave=None, consume: bool = False):
    """Dream ``x`` ``[1, 3, H, W]``. With ``max_size`` the dream runs with the longest side at most
    ``max_size``, its detail is added back onto the full-size picture (the output keeps the size), and
    ``cfg.finish_steps`` steps at full size (default: half the steps per octave) finish it there: the
    added detail alone is the small dream's structures enlarged, which the network at full size hardly
    sees (chelsea at 902x600, --max-size 160: objective 19.5 -> 17.8 in 0.5 s without the finish, 43.1
    in 1.8 s with 5 steps; the full-size dream reaches 85.4 in 5.0 s)."""
    dreamer = Dreamer(backbone, objective, cfg)
    H, W = x.shape[-2:]
    if max_size is not None and max(H, W) > max_size:
        s = max_size / max(H, W)
        small = ops.resample(x, (max(1, round(H * s)), max(1, round(W * s))), mode="bilinear", antialias=True)
        finish = (cfg.steps + 1) // 2 if cfg.finish_steps is None else cfg.finish_steps
        seen = {"total": 0}

        def small_progress(done, total):
            seen["total"] = total
            if progress is not None:
                progress(done, total + finish)

        out_small, stats = dreamer.run(small, progress=small_progress, on_octave=on_octave)
        detail = out_small.sub_(small)
        out = ops.octave_upsample_add(detail, x, mode="bicubic").clamp_(0, 1)
        del detail, out_small
        if finish > 0:
            fcfg = dataclasses.replace(cfg, octaves=1, steps=finish, recursions=0, init="image",
                                       seed=None if cfg.seed is None else cfg.seed + 1)
            done0 = seen["total"]
            out, fstats = Dreamer(backbone, objective, fcfg).run(
                out, progress=None if progress is None else (lambda d, t: progress(done0 + d, done0 + t)),
                consume=True)
            stats.steps_done += fstats.steps_done
            stats.skipped_steps += fstats.skipped_steps
            stats.octave_sizes = [[int(H), int(W)], *stats.octave_sizes]
            if on_octave is not None:
                on_octave(len(stats.octave_sizes) - 1, out)
        return out, stats
    return dreamer.run(x, progress=progress, on_octave=on_octave, consume=consume)
