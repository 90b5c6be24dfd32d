"""Fine-tune the classifier of the default backbone on a folder with one subfolder per class.

``folder/brick/*.jpg``, ``folder/grass/*.png`` ... -> a backbone whose classes are ``brick``, ``grass``:
the ImageNet classifier is replaced by a fresh one, trained (optionally with the last blocks) on a
stratified train/validation split with augmentation (random resized crop, horizontal flip,
brightness/contrast jitter), AdamW, label smoothing, early stop on validation accuracy; the best epoch's
weights are kept. BatchNorm statistics stay frozen (small folders would ruin them). The result is
saved with :func:`fastdream.backbones.save_checkpoint` (tensors only, with the class names), so
``load_backbone(path)`` / ``--backbone path`` dream and visualize the new classes by name.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import pathlib
import time
from typing import Callable

import torch
import torch.nn.functional as F

from fastdream.errors import FastdreamError, InputError

RESIZE_RATIO = 256 / 224  # pictures are kept with their short side at size * this (the usual 256 for 224)


@dataclasses.dataclass
class FinetuneConfig:
    train_blocks: int = 0       # also train the 1x1 head convolution and the last N MBConv blocks
    epochs: int = 10
    size: int = 224
    batch_size: int = 16
    lr: float = 1e-3            # classifier; trained blocks get lr / 10
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    val_fraction: float = 0.2
    patience: int = 3           # epochs without a better validation accuracy before stopping
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.train_blocks <= 16:
            raise FastdreamError(f"train_blocks must be 0..16, got {self.train_blocks}")
        if not 1 <= self.epochs <= 10000:
            raise FastdreamError(f"epochs must be 1..10000, got {self.epochs}")
        if not 32 <= self.size <= 1024:
            raise FastdreamError(f"size must be 32..1024, got {self.size}")
        if not 1 <= self.batch_size <= 4096:
            raise FastdreamError(f"batch_size must be 1..4096, got {self.batch_size}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 10):
            raise FastdreamError(f"lr must be in (0, 10], got {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise FastdreamError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not 1 <= self.patience <= 10000:
            raise FastdreamError(f"patience must be >= 1, got {self.patience}")


# -- the folder ----------------------------------------------------------------------------------

@dataclasses.dataclass
class Dataset:
    classes: list[str]
    images: list[torch.Tensor]      # uint8 [3, h, w], short side = size * RESIZE_RATIO
    labels: list[int]
    skipped: list[str]              # unreadable files
    ignored: int                    # files that are not pictures (by extension)


def scan_folder(folder) -> tuple[list[str], dict[str, list[pathlib.Path]], int]:
    """Class names (subfolders, sorted) and their picture files; checks the layout."""
    from fastdream.imageio import READABLE

    root = pathlib.Path(folder).expanduser()
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (finetune needs a folder with one subfolder per class)")
    subs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subs:
        raise InputError(f"{root}: no subfolders; put the pictures of each class in a subfolder named after it")
    files, ignored = {}, 0
    for d in subs:
        pics = []
        for f in sorted(d.rglob("*")):
            if not f.is_file() or any(part.startswith(".") for part in f.relative_to(d).parts):
                continue
            if f.suffix.lower() in READABLE:
                pics.append(f)
            else:
                ignored += 1
        if pics:
            files[d.name] = pics
    if not files:
        raise InputError(f"{root}: the subfolders hold no pictures")
    if len(files) < 2:
        only = next(iter(files))
        raise InputError(f"{root}: only one class ({only!r}) has pictures; fine-tuning needs at least two subfolders "
                         "with pictures")
    return list(files), files, ignored


def _resize_short(img, short: int):
    from PIL import Image

    w, h = img.size
    s = short / min(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC, reducing_gap=3.0)


def load_folder(folder, size: int, log: Callable[[str], None] | None = None) -> Dataset:
    """Read every picture (short side resized to ``size * 256/224``); unreadable ones are skipped and
    counted; more than half unreadable, or a class left with fewer than two pictures, is an error."""
    import numpy as np

    from fastdream.imageio import open_image

    classes, files, ignored = scan_folder(folder)
    short = round(size * RESIZE_RATIO)
    images, labels, skipped = [], [], []
    for ci, name in enumerate(classes):
        for f in files[name]:
            try:
                img = open_image(f)
                img = img.convert("RGB")
            except (InputError, OSError, ValueError) as e:
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                skipped.append(msg if str(f) in msg else f"{f}: {msg}")
                continue
            a = np.asarray(_resize_short(img, short), dtype=np.uint8)
            images.append(torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous())
            labels.append(ci)
    total = sum(len(v) for v in files.values())
    if len(skipped) * 2 > total:
        raise InputError(f"{folder}: {len(skipped)} of {total} pictures are unreadable (first: {skipped[0]})")
    counts = [labels.count(i) for i in range(len(classes))]
    few = [c for c, n in zip(classes, counts) if n < 2]
    if few:
        raise InputError(f"{folder}: class {few[0]!r} has {counts[classes.index(few[0])]} readable picture(s); "
                         "each class needs at least 2 (one to train, one to validate)")
    if skipped and log is not None:
        log(f"warning: skipped {len(skipped)} unreadable picture(s) of {total} (first: {skipped[0]})")
    return Dataset(classes, images, labels, skipped, ignored)


def split(labels: list[int], val_fraction: float, gen: torch.Generator) -> tuple[list[int], list[int]]:
    """Stratified split: per class ``max(1, round(n * val_fraction))`` pictures to validation, at least one to train."""
    train, val = [], []
    for c in sorted(set(labels)):
        idx = [i for i, l in enumerate(labels) if l == c]
        order = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        k = min(max(1, round(len(idx) * val_fraction)), len(idx) - 1)
        val += order[:k]
        train += order[k:]
    return sorted(train), sorted(val)


# -- augmentation --------------------------------------------------------------------------------

def _crop_resize(img: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    y, x, h, w = box
    crop = img[:, y:y + h, x:x + w].float().div_(255)[None]
    return F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def augment(img: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 35-100%, aspect 3/4-4/3), horizontal flip, brightness/contrast +-20%.
    ``img``: uint8 ``[3, h, w]`` -> float ``[3, size, size]`` in [0, 1]."""
    _, H, W = img.shape
    box = (0, 0, H, W)
    for _ in range(10):
        area = H * W * (0.35 + 0.65 * torch.rand((), generator=gen).item())
        logr = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand((), generator=gen).item()
        w = round(math.sqrt(area * math.exp(logr)))
        h = round(math.sqrt(area / math.exp(logr)))
        if 0 < w <= W and 0 < h <= H:
            y = torch.randint(0, H - h + 1, (), generator=gen).item()
            x = torch.randint(0, W - w + 1, (), generator=gen).item()
            box = (y, x, h, w)
            break
    out = _crop_resize(img, box, size)
    if torch.rand((), generator=gen).item() < 0.5:
        out = out.flip(-1)
    b = 1 + 0.4 * (torch.rand((), generator=gen).item() - 0.5)
    c = 1 + 0.4 * (torch.rand((), generator=gen).item() - 0.5)
    mean = out.mean()
    return ((out - mean) * c + mean * b).clamp_(0, 1)


def center(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central square, resized to ``size``: uint8 ``[3, h, w]`` -> float ``[3, size, size]``."""
    _, H, W = img.shape
    s = min(H, W)
    return _crop_resize(img, ((H - s) // 2, (W - s) // 2, s, s), size)


# -- training ------------------------------------------------------------------------------------

def trainable_parameters(backbone, head: set, train_blocks: int) -> tuple[list, list]:
    """(classifier parameters, block parameters) for ``train_blocks`` (the head conv and the last N blocks,
    found by their names in the EfficientNet-Lite state-dict layout: ``_blocks.N.``, ``_conv_head``, ``_bn1``)."""
    cls_params = [p for p in backbone.model.parameters() if id(p) in head]
    block_params = []
    if train_blocks > 0:
        n_blocks = sum(1 for t in backbone.tap_names() if t.startswith("block"))
        first = max(0, n_blocks - train_blocks)
        prefixes = ("_conv_head.", "_bn1.") + tuple(f"_blocks.{i}." for i in range(first, n_blocks))
        block_params = [p for n, p in backbone.model.named_parameters()
                        if n.startswith(prefixes) and id(p) not in head]
        if not block_params:
            raise FastdreamError(f"{backbone.name}: cannot find its last blocks to train; use train_blocks=0")
    return cls_params, block_params


def _evaluate(backbone, batches, device) -> tuple[float, float]:
    loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in batches:
            logits = backbone(x.to(device))
            loss += F.cross_entropy(logits, y.to(device), reduction="sum").item()
            correct += (logits.argmax(1).cpu() == y).sum().item()
            n += len(y)
    return loss / max(n, 1), correct / max(n, 1)


def finetune_folder(folder, cfg: FinetuneConfig, *, output=None, device="cpu", backbone=None,
                    log: Callable[[str], None] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[object, dict]:
    """Train; returns ``(backbone, stats)`` and writes ``output`` (a checkpoint) when given."""
    from fastdream.backbones import load_backbone, save_checkpoint

    cfg.validate()
    t0 = time.perf_counter()
    device = torch.device(device)
    data = load_folder(folder, cfg.size, log=log)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    train_idx, val_idx = split(data.labels, cfg.val_fraction, gen)
    bb = load_backbone(backbone, device="cpu")
    if backbone is not None and bb is backbone:
        bb = copy.deepcopy(bb)
    before = {id(p) for p in bb.model.parameters()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        bb.replace_classifier(data.classes)
    head = {id(p) for p in bb.model.parameters()} - before
    bb = bb.to(device)
    for p in bb.parameters():
        p.requires_grad_(False)
    cls_params, block_params = trainable_parameters(bb, head, cfg.train_blocks)
    for p in cls_params + block_params:
        p.requires_grad_(True)
    groups = [{"params": cls_params, "lr": cfg.lr}]
    if block_params:
        groups.append({"params": block_params, "lr": cfg.lr / 10})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    bb.eval()  # BatchNorm statistics and dropout stay as trained on ImageNet

    val_x = torch.stack([center(data.images[i], cfg.size) for i in val_idx])
    val_y = torch.tensor([data.labels[i] for i in val_idx])
    val_batches = [(val_x[i:i + cfg.batch_size], val_y[i:i + cfg.batch_size]) for i in range(0, len(val_idx), cfg.batch_size)]
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    trainable = cls_params + block_params
    best = {"val_accuracy": -1.0, "val_loss": math.inf, "epoch": 0, "state": None}
    history, stale, done = [], 0, 0
    for epoch in range(1, cfg.epochs + 1):
        te = time.perf_counter()
        order = [train_idx[j] for j in torch.randperm(len(train_idx), generator=gen).tolist()]
        tot_loss, correct, n = 0.0, 0, 0
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            x = torch.stack([augment(data.images[i], cfg.size, gen) for i in idx]).to(device)
            y = torch.tensor([data.labels[i] for i in idx], device=device)
            logits = bb(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(idx)
            done += 1
            if progress is not None:
                progress(done, cfg.epochs * steps_per_epoch)
        val_loss, val_acc = _evaluate(bb, val_batches, device)
        row = {"epoch": epoch, "train_loss": round(tot_loss / n, 4), "train_accuracy": round(correct / n, 4),
               "val_loss": round(val_loss, 4), "val_accuracy": round(val_acc, 4),
               "seconds": round(time.perf_counter() - te, 2)}
        history.append(row)
        if log is not None:
            log(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.3f} accuracy {100 * row['train_accuracy']:.1f}%"
                f"  validation loss {row['val_loss']:.3f} accuracy {100 * val_acc:.1f}%")
        if val_acc > best["val_accuracy"] or (val_acc == best["val_accuracy"] and val_loss < best["val_loss"]):
            best = {"val_accuracy": val_acc, "val_loss": val_loss, "epoch": epoch,
                    "state": [p.detach().clone() for p in trainable]}
            stale = 0
        else:
            stale += 1
            if stale >= cfg.patience:
                if log is not None:
                    log(f"early stop: no better validation accuracy for {cfg.patience} epochs")
                break
    with torch.no_grad():
        for p, v in zip(trainable, best["state"]):
            p.copy_(v)
    bb.freeze()
    stats = {
        "classes": data.classes,
        "pictures": {c: data.labels.count(i) for i, c in enumerate(data.classes)},
        "train_pictures": len(train_idx),
        "val_pictures": len(val_idx),
        "skipped": len(data.skipped),
        "skipped_files": data.skipped[:20],
        "ignored_files": data.ignored,
        "history": history,
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"],
        "stopped_early": len(history) < cfg.epochs,
        "trained_parameters": int(sum(p.numel() for p in trainable)),
        "seconds": round(time.perf_counter() - t0, 3),
        "config": dataclasses.asdict(cfg),
    }
    if output is not None:
        extra = {"finetune": {k: stats[k] for k in ("classes", "pictures", "best_epoch", "best_val_accuracy")}
                 | {"config": dataclasses.asdict(cfg), "history": history}}
        save_checkpoint(bb, output, extra=extra)
    return bb, stats
