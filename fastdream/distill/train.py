"""Training the feed-forward generator on teacher pairs: the loop (data in ``distill.data``, loss terms in
``distill.losses``, checkpoints in ``distill.checkpoint``, the data-parallel set-up in ``distill.parallel``).

Loss per batch (``G`` the generator, ``x`` input crops, ``y`` the teacher's dreams of them)::

    pixel_weight * L1(G(x), y)
    + feature_weight * sum over taps l of  mean((f_l(G(x)) - f_l(y))^2) / mean(f_l(y)^2)
    + style_weight * sum over taps l of  mean((gram(f_l(G(x))) - gram(f_l(y)))^2) / mean(gram(f_l(y))^2)
    + adversarial_weight * -mean(D(x, G(x)))         (after ``adversarial_start`` steps)
    + objective_weight * shortfall(obj_p(G(x)), target * obj_p(y))    (the teacher's own objective,
          per patch p of ``objective_patch`` pixels, and per channel with ``objective_channels``)
    + objective_weight * shortfall(obj_p(G(u)), target * gain * obj_p(u))   (``unpaired`` photo crops u)
    + temporal_weight * L1 over the overlap of G(x) and G(x shifted by a few pixels)
    + grid_weight * the 2-pixel grid of G(x) beyond y's          (``losses.grid_excess``)

``D`` is a conditional patch discriminator (``distill.losses.PatchDiscriminator``) trained beside the
generator with the hinge loss on (photo, teacher dream) against (photo, filter output): pixel and
feature losses alone learn the average of the dreams the teacher might have made (its jitter is
random), a faint blur; the discriminator asks for a dream that looks drawn. ``f_l`` are taps of the
(frozen) default backbone; it sees every crop mirrored outwards by ``loss_margin`` pixels.
Batches depend only on ``(seed, step, rank)``, and the learning rate only on the step (cosine decay),
so a run resumed from a checkpoint continues as an uninterrupted one would. Under ``torchrun``
(``WORLD_SIZE > 1``) the same code trains data-parallel with DistributedDataParallel: each rank on its
own GPU with NCCL when CUDA is available (``--device auto|cuda``), else gloo between CPU processes;
rank 0 writes checkpoints.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fastdream.distill.checkpoint import read_checkpoint, save_checkpoint
from fastdream.distill.config import TrainConfig
from fastdream.distill.data import PairSet, PhotoSet
from fastdream.distill.generator import GeneratorConfig, build_generator, count_params
from fastdream.distill.losses import FeatureLoss, PatchDiscriminator, d_hinge, g_hinge, grid_excess
from fastdream.distill.parallel import barrier, init_group, placement, wrap
from fastdream.errors import InputError
from fastdream.precision import resolve_precision


# -- the loop -----------------------------------------------------------------------------------------

@torch.no_grad()
def validate(model, pairs: PairSet, device="cpu") -> dict:
    """L1 and PSNR of the generator against the teacher on the held-out pairs (and the input's PSNR),
    one pair at a time (pairs may differ in size); the PSNR is over all their pixels together."""
    from fastdream.metrics import psnr

    if not pairs.val_x:
        return {}
    outs, ys, xs = [], [], []
    for xv, yv in zip(pairs.val_x, pairs.val_y):
        x = xv[None].float().div_(255).to(device)
        outs.append(model(x).flatten().cpu())
        ys.append(yv.flatten().float().div_(255))
        xs.append(x.flatten().cpu())
    o, y, x = (torch.cat(t)[None, None, None] for t in (outs, ys, xs))
    return {"val_pairs": len(pairs.val_x), "val_l1": float(F.l1_loss(o, y)), "val_psnr_db": psnr(o, y),
            "val_input_psnr_db": psnr(x, y)}


def train(data, output, cfg: TrainConfig | None = None, *, resume: bool = False, backbone=None,
          progress: Callable[[int, int], None] | None = None, log=None) -> dict:
    """Train a generator on the pairs in ``data``; the checkpoint goes to ``output`` (.pt).
    ``progress(done, total)`` is called after every step (and its checkpoint, when one is due).

    >>> from fastdream.distill.train import TrainConfig, train
    >>> train("pairs/", "filter.pt", TrainConfig(steps=2000))
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    place = placement(cfg.device)
    rank, dev = place.rank, place.device
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
                         f"pair ({pairs.min_size} pixels); use a smaller --crop"
                         + (" or --temporal-weight 0" if margin else ""))
    if log is None:
        def log(msg):
            if rank == 0:
                print(msg, file=sys.stderr, flush=True)

    start_from = None
    if cfg.init:  # fine-tuning: the filter's layout, and its weights unless a checkpoint is resumed
        from fastdream.distill.export import generator_from_onnx

        start_from, _ = generator_from_onnx(cfg.init)
        g = start_from.config
        cfg = dataclasses.replace(cfg, version=g.version, width=g.width, blocks=g.blocks, deep=g.deep,
                                  mid_blocks=g.mid_blocks, coarse=g.coarse, padding=g.padding,
                                  output="phases" if "phases" in (g.output, cfg.output) else g.output,
                                  fine_blocks=max(g.fine_blocks, cfg.fine_blocks),
                                  stem_path=g.stem_path or cfg.stem_path,
                                  block0_path=g.block0_path or cfg.block0_path)
        cfg.validate_layout()
        if resume and out.exists():
            start_from = None
        else:
            log(f"starting from {cfg.init}: {g.arch}, width {g.width}, deep {g.deep}, blocks {g.blocks}")
    init_group(place)
    torch.manual_seed(cfg.seed)
    model = build_generator(cfg.generator(), pretrained=True).to(dev)
    if start_from is not None:  # (v3: a resize output stage may grow into a phases one, fine blocks be added)
        model.load_generator(start_from)
    if cfg.train_encoder:
        model.train_encoder(True)
    enc = list(model.encoder.parameters()) if cfg.version == 3 else []  # v3: the backbone's blocks learn slower
    ids = {id(p) for p in enc}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
    if enc:
        groups.append({"params": enc, "lr_scale": 0.1})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.5, 0.99))
    disc = d_opt = None
    if cfg.adversarial_weight > 0:
        disc = PatchDiscriminator(cfg.disc_width, cfg.disc_scales, cfg.disc_highpass).to(dev)
        d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.99))
    start, history = 0, []
    if resume and out.exists():
        ck = read_checkpoint(out)
        saved = dataclasses.asdict(GeneratorConfig(**ck["generator"]))  # fields added since: their defaults
        if saved != dataclasses.asdict(model.config):
            raise InputError(f"{out}: trained with generator {saved}, not {dataclasses.asdict(model.config)}")
        model.load_state_dict(ck["model"])
        if ck["optimizer"]:
            opt.load_state_dict(ck["optimizer"])
        if disc is not None and "discriminator" in ck:
            tc, d = ck.get("train_config") or {}, TrainConfig()  # fields added since: their defaults
            width, scales = tc.get("disc_width", d.disc_width), tc.get("disc_scales", d.disc_scales)
            if (width, scales) != (cfg.disc_width, cfg.disc_scales):
                raise InputError(f"{out}: its discriminator has width {width} and {scales} scale(s), not "
                                 f"{cfg.disc_width} and {cfg.disc_scales}; resume with the checkpoint's "
                                 "--disc-width and --disc-scales")
            hp = tc.get("disc_highpass", d.disc_highpass)
            if hp != cfg.disc_highpass:
                raise InputError(f"{out}: its discriminator saw the high-pass of sigma {hp}, not "
                                 f"{cfg.disc_highpass}; resume with the checkpoint's --disc-highpass")
            disc.load_state_dict(ck["discriminator"])
            if ck.get("d_optimizer"):
                d_opt.load_state_dict(ck["d_optimizer"])
        start, history = int(ck["step"]), list(ck["history"] or [])
    net = wrap(model, place)
    dnet = wrap(disc, place) if disc is not None else None

    feat = None
    teacher = pairs.teacher.get("teacher", {})
    if cfg.feature_weight > 0 or cfg.objective_weight > 0 or cfg.style_weight > 0:
        from fastdream.backbones import get_backbone

        bb = get_backbone(backbone, dev)
        objective = None
        if cfg.objective_weight > 0:
            from fastdream.objective_text import build_objective

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
                           channels=cfg.objective_channels, feature_norm=cfg.feature_norm,
                           precision=resolve_precision(cfg.precision, dev))
    gain = feat.teacher_gain(pairs, min(cfg.crop, pairs.min_size)) if photos is not None else None
    if gain is not None:
        log(f"teacher gain on the training pairs (median obj(dream) / obj(input)): {gain:.3f}")
    t0 = time.perf_counter()
    last = {}
    weights = {"feature": cfg.feature_weight, "objective": cfg.objective_weight, "style": cfg.style_weight}
    model.train()
    end = cfg.steps if cfg.until is None else cfg.until
    if progress is not None:
        progress(start, end)  # where this run starts (a resumed one: its checkpoint's step)
    for step in range(start, end):
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step) * g.get("lr_scale", 1.0)
        x, y = pairs.batch(step, rank, cfg.batch, cfg.crop, cfg.seed, margin, align=cfg.crop_align)
        x, y = x.to(dev), y.to(dev)
        c = cfg.crop
        xa, ya = x[..., :c, :c], y[..., :c, :c]
        if photos is not None:  # one forward pass for both kinds of crops (one DDP reduction)
            xu = photos.batch(step, rank, cfg.unpaired, cfg.seed).to(dev)
            o_all = net(torch.cat([xa, xu]))
            o, ou = o_all[:len(xa)], o_all[len(xa):]
        else:
            o = net(xa)
        adversarial = dnet is not None and step >= cfg.adversarial_start
        terms = {}
        if adversarial:  # the discriminator's step first, on the detached output
            for g in d_opt.param_groups:
                g["lr"] = cfg.disc_lr * cfg.lr_at(step) / cfg.lr
            ld = d_hinge(dnet(xa, ya), dnet(xa, o.detach()))
            d_opt.zero_grad(set_to_none=True)
            ld.backward()
            d_opt.step()
            terms["disc"] = float(ld.detach())
        loss_pix = F.l1_loss(o, ya)
        loss = cfg.pixel_weight * loss_pix
        terms["pixel"] = float(loss_pix.detach())
        if feat is not None:
            for name, v in feat(o, ya).items():
                loss = loss + weights[name] * v
                terms[name] = float(v.detach())
        if adversarial:
            if disc is not None:
                disc.requires_grad_(False)
            la = g_hinge(dnet(xa, o))
            loss = loss + cfg.adversarial_weight * la
            terms["adversarial"] = float(la.detach())
        if cfg.grid_weight > 0:
            lg = grid_excess(o, ya)
            loss = loss + cfg.grid_weight * lg
            terms["grid"] = float(lg.detach())
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
        if disc is not None:
            disc.requires_grad_(True)
        terms["loss"] = float(loss.detach())
        last = terms
        done = step + 1
        if done % cfg.eval_every == 0 or done in (cfg.steps, end):
            model.eval()
            v = validate(model, pairs, dev) if rank == 0 else {}
            model.train()
            history.append({"step": done, "seconds": round(time.perf_counter() - t0, 1),
                            **{k: round(val, 5) for k, val in terms.items()},
                            **{k: (round(val, 4) if isinstance(val, float) else val) for k, val in v.items()}})
            log(f"step {done}/{cfg.steps}: loss {terms['loss']:.4f} ("
                + ", ".join(f"{k} {val:.4f}" for k, val in terms.items() if k != "loss") + ")"
                + (f", held-out PSNR {v['val_psnr_db']:.2f} dB (input {v['val_input_psnr_db']:.2f})" if v else ""))
        if rank == 0 and (done % cfg.save_every == 0 or done in (cfg.steps, end)):
            save_checkpoint(out, model, opt, done, cfg, teacher, history, disc, d_opt)
        if progress is not None:  # after the save: an interruption here loses nothing
            progress(done, end)
    seconds = time.perf_counter() - t0
    model.eval()
    final = validate(model, pairs, dev) if rank == 0 else {}
    barrier(place)
    return {"output": str(out), "rank": rank, "world_size": place.world, "device": str(dev), "steps": cfg.steps,
            "start_step": start, "seconds": round(seconds, 3),
            "seconds_per_step": round(seconds / max(1, end - start), 4), "end_step": end,
            "params": count_params(model), "train_pairs": len(pairs.train_x), "last_losses": last, **final,
            **({"unpaired_photos": len(photos.photos), "teacher_gain": round(gain, 4)} if photos is not None else {}),
            "config": dataclasses.asdict(cfg), "teacher": teacher, "peak_rss_mb": _rss()}


def _rss():
    from fastdream.report import peak_rss_mb

    return round(peak_rss_mb(), 1)
