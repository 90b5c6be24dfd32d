"""Faces where you want them, driven by a real face detector (MTCNN, :mod:`fastdream.detectors.mtcnn`).

``Face(box)`` is the objective of a detection dream: each of MTCNN's three networks looks at the box
the way the cascade would (a square window about the box, resized to 12, 24 and 48 pixels, moved and
scaled a little at random each step, as the cascade's proposals would be), and the objective is

    sum over P-Net, R-Net, O-Net of  log p(face)  +  iou_weight * IoU(regressed box, target box)

so the networks both call the window a face and regress their box onto the one asked for. Only the
box's pixels change (``pixel_mask``). ``FaceSuppress`` is the optional opposite outside the boxes:
P-Net's face probability over the whole picture pyramid, pushed down wherever no face was asked for.

``face_report`` runs the full cascade (proposals, refinement, NMS) on a picture and says, for every
requested box, whether a face was found there (IoU >= 0.5), with its IoU and score.
"""
from __future__ import annotations

import torch

from fastdream.engine.objectives import Box, Context, Objective, _feathered_box, as_box, sample_views
from fastdream.errors import FastdreamError

DETECTED_IOU = 0.5


def _check_box(box) -> Box:
    return as_box(box, "face box")


def box_iou_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Differentiable IoU of matching rows of ``a`` and ``b`` ``[N, 4]`` (x0, y0, x1, y1): ``[N]``."""
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = w * h
    area = lambda t: (t[:, 2] - t[:, 0]).clamp(min=0) * (t[:, 3] - t[:, 1]).clamp(min=0)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp_min(1e-6)


def _unrolled(ctx: Context) -> torch.Tensor:
    if ctx.window is not None and tuple(ctx.window[2:]) != tuple(ctx.full_size):
        raise FastdreamError("face objectives need the whole picture, not one tile")
    x = ctx.image
    return torch.roll(x, shifts=(-ctx.shift[0], -ctx.shift[1]), dims=(2, 3)) if ctx.shift != (0, 0) else x


class Face(Objective):
    """A face in ``box`` ``(x0, y0, x1, y1)`` (fractions of the picture), as MTCNN sees it.

    >>> obj = Face((0.1, 0.1, 0.35, 0.4)) + Face((0.6, 0.1, 0.85, 0.4))
    """

    whole_picture = True

    def __init__(self, box, *, iou_weight: float = 2.0, jitter: float = 0.08, scale=(0.9, 1.1), views: int = 2,
                 detector=None):
        self.box = _check_box(box)
        self.iou_weight, self.jitter, self.scale, self.views = float(iou_weight), float(jitter), tuple(scale), int(views)
        self._detector = detector
        self._cache: dict = {}

    @property
    def detector(self):
        if self._detector is None:
            from fastdream.detectors.mtcnn import get_detector

            self._detector = get_detector("cpu")
        return self._detector

    def taps(self):
        return set()

    def pixel_mask(self, ctx: Context, device) -> torch.Tensor:
        H, W = ctx.full_size
        key = (H, W, str(device))
        if key not in self._cache:
            self._cache = {key: _feathered_box(H, W, self.box).to(device)}
        m = self._cache[key]
        return torch.roll(m, shifts=ctx.shift, dims=(0, 1)) if ctx.shift != (0, 0) else m

    def window(self, H: int, W: int) -> tuple[float, float, float, float]:
        """The square window (MTCNN's ``rerec``) about the box, ``(x0, y0, x1, y1)`` as fractions (may
        reach outside)."""
        x0, y0, x1, y1 = self.box
        side = max((y1 - y0) * H, (x1 - x0) * W)
        cy, cx = (y0 + y1) / 2 * H, (x0 + x1) / 2 * W
        return ((cx - side / 2) / W, (cy - side / 2) / H, (cx + side / 2) / W, (cy + side / 2) / H)

    def stage_values(self, picture: torch.Tensor, generator=None) -> dict[str, torch.Tensor]:
        """Per network: (log p(face), IoU of its regressed box with the target) ``[n * B]`` each."""
        from fastdream.detectors.mtcnn import ONET_SIZE, PNET_SIZE, RNET_SIZE, normalize

        det = self.detector.to(picture.device)
        H, W = picture.shape[-2:]
        x0, y0, x1, y1 = self.box
        target = torch.tensor([[x0 * W, y0 * H, x1 * W, y1 * H]], device=picture.device)
        n = self.views if generator is not None else 1
        out = {}
        for name, net, size in (("pnet", det.pnet, PNET_SIZE), ("rnet", det.rnet, RNET_SIZE),
                                ("onet", det.onet, ONET_SIZE)):
            views, win = sample_views(picture, self.window(H, W), (size, size), n, generator, self.jitter, self.scale)
            res = net(normalize(views))
            reg, logits = res[0], res[-1]
            if reg.dim() == 4:  # P-Net on one 12x12 window: a 1x1 map
                reg, logits = reg[:, :, 0, 0], logits[:, :, 0, 0]
            win = win.to(picture.device).repeat_interleave(picture.shape[0], 0)
            size_wh = torch.stack([win[:, 2] - win[:, 0], win[:, 3] - win[:, 1]] * 2, 1)
            pred = win + reg * size_wh
            iou = box_iou_diff(pred, target.expand_as(pred))
            out[name] = (logits.log_softmax(1)[:, 1], iou)
        return out

    def __call__(self, acts, ctx):
        picture = _unrolled(ctx)
        B = picture.shape[0]
        total = 0.0
        for logp, iou in self.stage_values(picture, ctx.generator).values():
            total = total + logp + self.iou_weight * iou
        return total.view(-1, B).mean(0)

    def __repr__(self):
        return f"Face(box={tuple(round(b, 4) for b in self.box)})"


class FaceSuppress(Objective):
    """Fewer faces outside ``keep`` boxes (``(x0, y0, x1, y1)``, fractions): minus P-Net's mean face
    probability over the picture pyramid, at the windows whose centre lies outside every kept box."""

    whole_picture = True

    def __init__(self, keep=(), detector=None, max_levels: int = 6):
        self.keep = [_check_box(b) for b in keep]
        self._detector = detector
        self.max_levels = int(max_levels)

    detector = Face.detector

    def taps(self):
        return set()

    def __call__(self, acts, ctx):
        import torch.nn.functional as F

        from fastdream.detectors.mtcnn import PNET_SIZE, normalize

        picture = _unrolled(ctx)
        det = self.detector.to(picture.device)
        H, W = picture.shape[-2:]
        det.check_size(H, W)
        total, count = picture.new_zeros(picture.shape[0]), 0
        for s in det.scales(H, W)[: self.max_levels]:
            level = F.interpolate(picture, size=(int(H * s + 1), int(W * s + 1)), mode="bilinear", antialias=True,
                                  align_corners=False)
            _, logits = det.pnet(normalize(level))
            p = logits.softmax(1)[:, 1]                                   # [B, h', w']
            hh, ww = p.shape[-2:]
            cy = ((2 * torch.arange(hh, device=p.device) + PNET_SIZE / 2) / s) / H  # window centres, fractions
            cx = ((2 * torch.arange(ww, device=p.device) + PNET_SIZE / 2) / s) / W
            outside = torch.ones(hh, ww, dtype=torch.bool, device=p.device)
            for x0, y0, x1, y1 in self.keep:
                inside = ((cy >= y0) & (cy <= y1))[:, None] & ((cx >= x0) & (cx <= x1))[None, :]
                outside &= ~inside
            if outside.any():
                total = total - p[:, outside].mean(1)
                count += 1
        return total / max(count, 1)

    def __repr__(self):
        return f"FaceSuppress(keep={len(self.keep)} boxes)"


def face_report(picture: torch.Tensor, boxes_px, detector=None) -> list[dict]:
    """For every requested box ``(x0, y0, x1, y1)`` in pixels: ``{"box", "detected", "iou", "score"}`` from
    the full MTCNN cascade on ``picture`` ``[1, 3, H, W]`` (the best-overlapping detection; detected
    means IoU >= 0.5), plus ``"faces"``: every detection."""
    from fastdream.detectors.mtcnn import box_iou, get_detector

    det = detector or get_detector("cpu")
    found = det.detect(picture.detach().float().cpu() if picture.is_cuda else picture)
    rows = []
    for b in boxes_px:
        t = torch.tensor([list(map(float, b))])
        if len(found):
            ious = box_iou(t, found.boxes)[0]
            k = int(ious.argmax())
            iou, score = float(ious[k]), float(found.scores[k])
        else:
            iou, score = 0.0, 0.0
        rows.append({"box": [round(float(v), 1) for v in b], "detected": iou >= DETECTED_IOU, "iou": round(iou, 3),
                     "score": round(score, 4)})
    return rows


def found_faces(picture: torch.Tensor, detector=None) -> list[dict]:
    """Every face the full cascade finds: ``[{"box": [x0, y0, x1, y1], "score"}]``."""
    from fastdream.detectors.mtcnn import get_detector

    det = detector or get_detector("cpu")
    found = det.detect(picture.detach().float().cpu())
    return [{"box": [round(float(v), 1) for v in b], "score": round(float(s), 4)}
            for b, s in zip(found.boxes, found.scores)]
