"""Feature visualization: pictures, optimized from noise, that a class, a channel or a neuron loves.

The recipe of Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill 2017):

- the picture is a :class:`~fastdream.featvis.param.FourierImage` (spectral, colour-decorrelated);
- every step sees it through a fresh :class:`~fastdream.featvis.transforms.RobustTransform`;
- Adam (learning rate 0.05) climbs the objective;
- ``variants > 1`` pictures of the same target are optimized together with a diversity term: minus
  the mean pairwise cosine similarity of their Gram matrices at a middle layer, so they show different
  facets of the feature instead of one.

A class is scored with the ``logits`` tap (``ClassLogit`` on backbones that provide a ``class_map``
tap gives the same number as a mean of per-position logits).
"""
from __future__ import annotations

import dataclasses
import math
import time
import weakref
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from fastdream.engine.objectives import Context, Objective, Sum
from fastdream.errors import FastdreamError
from fastdream.featvis.param import FourierImage
from fastdream.featvis.transforms import RobustTransform

DIVERSITY_LAYER = "block6"
EVAL_TRANSFORMS = 16
EVAL_SEED = 20170701  # fixed: robust figures of different runs are measured under the same 16 transforms


# -- targets -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Target:
    """One term of what is visualized: ``kind`` is class | channel | neuron."""

    kind: str
    spec: str
    weight: float
    objective: Objective          # unweighted
    index: int | None = None      # class index

    @property
    def label(self) -> str:
        return f"{self.kind} {self.spec}" + (f" *{self.weight:g}" if self.weight != 1.0 else "")


_SHAPES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def layer_shapes(backbone, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """``{tap: shape without batch}`` at ``size``, cached per backbone (``layers()`` copies the model)."""
    per = _SHAPES.setdefault(backbone, {})
    key = (int(size[0]), int(size[1]))
    if key not in per:
        per[key] = dict(backbone.layers(key))
    return per[key]


# The default weights of visualize's priors, next to Adam on a class logit or a channel's mean (chosen with
# the independent judge; docs/priors.md); ``--prior KIND:W`` multiplies them by W.
VISUALIZE_PRIOR_WEIGHTS = {"bn": 0.002, "tv": 200.0, "l2": 1.0, "critic": 1.0}


def visualize_priors(specs, device="cpu") -> Objective | None:
    """The prior objective of visualize for PriorSpecs (``fastdream.objective_text.parse_priors``); None: the
    default (the BatchNorm prior); []: none."""
    from fastdream.engine.compose import PriorSpec, make_priors

    if specs is None:
        specs = [PriorSpec("bn")]
    return make_priors(specs, VISUALIZE_PRIOR_WEIGHTS, device=device)


def combined(targets: Sequence[Target]) -> Objective:
    return Sum([(t.weight, t.objective) for t in targets])


# -- forward -------------------------------------------------------------------------------------

def _has_tap(backbone, name: str) -> bool:
    try:
        backbone.resolve_tap(name)
        return True
    except Exception:
        return False


def run_taps(backbone, x: torch.Tensor, taps, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """``forward_taps`` that serves ``class_map`` from ``logits`` where the backbone has no class map
    (a class logit is the mean over positions of the class map, so the objective's value is the same)."""
    taps = set(taps)
    alias = "class_map" in taps and not _has_tap(backbone, "class_map")
    if alias:
        taps = (taps - {"class_map"}) | {"logits"}
    acts = backbone.forward_taps(x, sorted(taps), precision)
    if alias:
        acts["class_map"] = acts["logits"]
    return acts


def diversity_penalty(acts: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity of the Gram matrices of a batch ``[B, C, h, w]``; 0 for B = 1.

    Subtracting it from the objective (Lucid's ``diversity``) pushes the variants apart."""
    B = acts.shape[0]
    if B < 2:
        return acts.new_zeros(())
    from fastdream.metrics import gram_matrix

    g = F.normalize(gram_matrix(acts).flatten(1), dim=1)   # [B, C*C] (the scale cancels in the cosine)
    sim = g @ g.t()                                   # [B, B]
    off = sim.sum() - sim.diagonal().sum()
    return off / (B * (B - 1))


# -- the loop ------------------------------------------------------------------------------------

@dataclasses.dataclass
class VisualizeConfig:
    size: tuple[int, int] = (224, 224)
    steps: int = 256  # 128 gave greyer pictures: colourfulness 33.9 -> 41.3 on five tuning classes (docs/priors.md)
    lr: float = 0.05
    variants: int = 1
    diversity: float = 20.0
    diversity_layer: str = DIVERSITY_LAYER
    # the Fourier scale's 1/f exponent: 1.25 draws larger, bolder structures than Lucid's 1.0 (colourfulness
    # 41 -> 59 on six tuning classes, all still Lite2's top-1; 1.5 saturates to black and white; docs/priors.md)
    decay_power: float = 1.25
    seed: int = 0
    transforms: bool = True
    precision: str = "auto"           # the backbone's: auto | fp32 | bf16 | fp16 (see fastdream.precision)
    prior: Objective | None = None    # natural-image priors (BNPrior, TVPrior...), seen through the transforms

    def validate(self) -> None:
        h, w = self.size
        if not (16 <= h <= 4096 and 16 <= w <= 4096):
            raise FastdreamError(f"size must be 16..4096 pixels per side, got {h}x{w}")
        if not 0 <= self.steps <= 100000:
            raise FastdreamError(f"steps must be 0..100000, got {self.steps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise FastdreamError(f"the learning rate must be a positive number, got {self.lr}")
        if not 1 <= self.variants <= 64:
            raise FastdreamError(f"variants must be 1..64, got {self.variants}")
        if not (math.isfinite(self.decay_power) and 0 <= self.decay_power <= 3):
            raise FastdreamError(f"the spectrum decay must be 0..3, got {self.decay_power}")
        if not (math.isfinite(self.diversity) and self.diversity >= 0):
            raise FastdreamError(f"the diversity weight must be >= 0, got {self.diversity}")


def optimize(backbone, targets: Sequence[Target], cfg: VisualizeConfig, init: torch.Tensor | None = None,
             progress: Callable[[int, int], None] | None = None, device="cpu") -> tuple[torch.Tensor, dict]:
    """Optimize ``cfg.variants`` pictures for the targets; returns ``([N, 3, H, W] in [0, 1], stats)``.

    ``init``: a photo ``[1, 3, H, W]`` to start from instead of noise (all variants start there)."""
    cfg.validate()
    gen = torch.Generator().manual_seed(int(cfg.seed))
    n = cfg.variants
    size = tuple(init.shape[-2:]) if init is not None else tuple(cfg.size)
    param = FourierImage(size, n, decay_power=cfg.decay_power, generator=gen, device=device)
    if init is not None:
        param.set_image(init.to(device))
    obj = combined(targets)
    taps = set(obj.taps())
    if cfg.prior is not None:
        taps |= cfg.prior.taps()
    use_div = n > 1 and cfg.diversity > 0
    if use_div:
        backbone.resolve_tap(cfg.diversity_layer)
        taps.add(cfg.diversity_layer)
    tf = RobustTransform()
    from fastdream.precision import resolve_precision

    precision = resolve_precision(cfg.precision, device)
    opt = torch.optim.Adam(param.parameters(), lr=cfg.lr)
    history = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        x = param()
        xt = tf(x, gen) if cfg.transforms else x
        acts = run_taps(backbone, xt, taps, precision)
        ctx = Context(full_size=tuple(xt.shape[-2:]), image=xt, backbone=backbone)
        value = obj(acts, ctx)  # [N]
        loss = -value.sum()
        if cfg.prior is not None:
            loss = loss - cfg.prior(acts, ctx).sum()
        div = diversity_penalty(acts[cfg.diversity_layer]) if use_div else None
        if div is not None:
            loss = loss + cfg.diversity * n * div
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 16 == 0 or step == cfg.steps - 1:
            history.append({"step": step, "objective": float(value.detach().mean()),
                            **({"diversity_similarity": float(div.detach())} if div is not None else {})})
        if progress is not None:
            progress(step + 1, cfg.steps)
    with torch.no_grad():
        out = param().detach()
    return out, {"seconds": time.perf_counter() - t0, "history": history}


@torch.no_grad()
def measure(backbone, targets: Sequence[Target], images: torch.Tensor, n_transforms: int = EVAL_TRANSFORMS,
            seed: int = EVAL_SEED) -> list[dict]:
    """Per target: its figure on ``images`` ``[N, 3, H, W]`` as they are, and the mean over ``n_transforms``
    random jitter/scale/rotate transforms (the same draws for every run: ``seed`` is fixed).

    Classes give ``probability`` (softmax) and ``logit``; channels and neurons give ``activation``.
    Values are means over the N pictures; ``per_variant`` lists them one by one."""
    taps = set()
    for t in targets:
        taps |= t.objective.taps()
    if any(t.kind == "class" for t in targets):
        taps.add("logits")
    gen = torch.Generator().manual_seed(seed)
    tf = RobustTransform()

    def figures(x):  # -> {target i: (value [N], logit [N] or None)}
        acts = run_taps(backbone, x, taps)
        ctx = Context(full_size=tuple(x.shape[-2:]), image=x, backbone=backbone)
        res = []
        for t in targets:
            if t.kind == "class":
                logits = acts["logits"]
                res.append((logits.softmax(-1)[:, t.index], logits[:, t.index]))
            else:
                res.append((t.objective(acts, ctx), None))
        return res

    plain = figures(images)
    # the transforms in batches of up to 16 pictures: [k * N, 3, H, W] -> mean over k
    n = images.shape[0]
    per_batch = max(1, 16 // n)
    sums, done = None, 0
    while done < n_transforms:
        k = min(per_batch, n_transforms - done)
        f = figures(tf(images.repeat(k, 1, 1, 1), gen))
        vals = [v.view(k, n).sum(0) for v, _ in f]
        sums = vals if sums is None else [s + v for s, v in zip(sums, vals)]
        done += k
    robust = [s / n_transforms for s in sums]
    out = []
    for t, (v, logit), r in zip(targets, plain, robust):
        key = "probability" if t.kind == "class" else "activation"
        d = {"target": t.label, "kind": t.kind, "weight": t.weight, key: float(v.mean()), f"robust_{key}": float(r.mean())}
        if logit is not None:
            d["logit"] = float(logit.mean())
            d["class_index"] = t.index
            d["class_name"] = backbone.class_names[t.index]
        if images.shape[0] > 1:
            d["per_variant"] = [{key: float(a), f"robust_{key}": float(b)} for a, b in zip(v, r)]
        out.append(d)
    return out


def headline(figs: list[dict]) -> dict:
    """The report's top-level figures: those of the first class target, and of the first channel/neuron."""
    out = {}
    for key in ("probability", "activation"):
        first = next((f for f in figs if key in f), None)
        if first is not None:
            out[key] = first[key]
            out[f"robust_{key}"] = first[f"robust_{key}"]
    return out
