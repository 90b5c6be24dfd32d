"""MTCNN, the face detector of Zhang, Zhang, Li & Qiao ("Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks", IEEE SPL 2016): three small networks in a cascade.

- **P-Net** (proposal), fully convolutional: on every level of an image pyramid, each 12x12 window
  (stride 2) gets a face probability and a box regression; windows above ``thresholds[0]`` become
  candidate boxes, thinned by non-maximum suppression per level (IoU 0.5) and over all levels (0.7).
- **R-Net** (refine): each candidate, squared and cut out at 24x24, is scored again and its box
  regressed; above ``thresholds[1]``, NMS 0.7.
- **O-Net** (output): the same at 48x48, with five facial landmarks; above ``thresholds[2]``, the
  boxes regressed once more and NMS with the "Min" overlap (intersection over the smaller box), 0.7.

The networks are defined here with the layer names of facenet-pytorch (MIT), whose converted weights
ship in ``fastdream/detectors/data/`` with their licence; the cascade follows facenet-pytorch's
``detect_face`` step for step (area resampling, MTCNN's +1 pixel box conventions, boxes clipped to
the picture), with a torch NMS written out (torchvision is not a dependency). Inputs are RGB pictures
``[1, 3, H, W]`` in [0, 1]; the networks see ``(255 x - 127.5) / 128``.

>>> det = MTCNN()
>>> faces = det.detect(photo)           # photo: [1, 3, H, W] in [0, 1]
>>> faces.boxes, faces.scores          # [N, 4] (x0, y0, x1, y1) pixels, [N]
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources

import torch
import torch.nn.functional as F
from torch import nn

from fastdream.errors import FastdreamError

PNET_SIZE, RNET_SIZE, ONET_SIZE = 12, 24, 48
MIN_FACE_SIZE = 20                 # facenet-pytorch's default: the smallest face searched for, pixels
THRESHOLDS = (0.6, 0.7, 0.7)
FACTOR = 0.709                     # pyramid step (about 1 / sqrt(2))


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Pictures in [0, 1] -> MTCNN's input ``(255 x - 127.5) / 128``."""
    return (x * 255.0 - 127.5) * 0.0078125


class PNet(nn.Module):
    """Proposal network: ``[B, 3, h, w]`` -> box regression ``[B, 4, h', w']`` and face/non-face logits
    ``[B, 2, h', w']`` with ``h' = (ceil((h - 2) / 2) - 4)`` (one cell per 12x12 window, stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.conv4_1(x)


class RNet(nn.Module):
    """Refinement network: ``[B, 3, 24, 24]`` -> box regression ``[B, 4]``, logits ``[B, 2]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)  # the converted weights expect (w, h, c) order
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), self.dense5_1(x)


class ONet(nn.Module):
    """Output network: ``[B, 3, 48, 48]`` -> box regression ``[B, 4]``, landmarks ``[B, 10]`` (five x
    then five y, as fractions of the box), logits ``[B, 2]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x)


def weights_path(name: str) -> str:
    return str(importlib.resources.files("fastdream.detectors") / "data" / f"{name}.pt")


# -- boxes ---------------------------------------------------------------------------------------------


def box_iou(a: torch.Tensor, b: torch.Tensor, mode: str = "union", plus_one: bool = False) -> torch.Tensor:
    """Overlaps ``[N, M]`` of boxes ``a`` ``[N, 4]`` and ``b`` ``[M, 4]`` (x0, y0, x1, y1): intersection over
    union, or over the smaller box (``mode="min"``). ``plus_one``: MTCNN's convention that a box covers
    ``x1 - x0 + 1`` pixels."""
    e = 1.0 if plus_one else 0.0
    area_a = (a[:, 2] - a[:, 0] + e) * (a[:, 3] - a[:, 1] + e)
    area_b = (b[:, 2] - b[:, 0] + e) * (b[:, 3] - b[:, 1] + e)
    w = (torch.minimum(a[:, None, 2], b[None, :, 2]) - torch.maximum(a[:, None, 0], b[None, :, 0]) + e).clamp(min=0)
    h = (torch.minimum(a[:, None, 3], b[None, :, 3]) - torch.maximum(a[:, None, 1], b[None, :, 1]) + e).clamp(min=0)
    inter = w * h
    if mode == "min":
        return inter / torch.minimum(area_a[:, None], area_b[None, :])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union",
        plus_one: bool = True) -> torch.Tensor:
    """Greedy non-maximum suppression: indices (highest score first) of the boxes ``[N, 4]`` kept, each
    overlapping no better-scored kept box by more than ``threshold`` (by default with MTCNN's +1 pixel
    areas)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    over = box_iou(boxes[order], boxes[order], mode, plus_one=plus_one) > threshold  # [N, N]
    alive = torch.ones(len(order), dtype=torch.bool)
    over = over.cpu()
    keep = []
    for i in range(len(order)):
        if alive[i]:
            keep.append(i)
            alive &= ~over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """MTCNN's ``rerec``: each box ``[N, >=4]`` made a square of its longer side, same centre."""
    out = boxes.clone()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """MTCNN's ``bbreg``: move each box's edges by ``reg`` ``[N, 4]`` times its +1-pixel width/height."""
    out = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + reg[:, 0] * w
    out[:, 1] = boxes[:, 1] + reg[:, 1] * h
    out[:, 2] = boxes[:, 2] + reg[:, 2] * w
    out[:, 3] = boxes[:, 3] + reg[:, 3] * h
    return out


def _crops(img: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut ``boxes`` out of ``img`` ``[1, 3, H, W]`` (truncated to whole pixels and clipped to the picture,
    as facenet-pytorch's ``pad``) and area-resample each to ``size x size``: ``[N, 3, size, size]``."""
    H, W = img.shape[-2:]
    b = boxes[:, :4].trunc().long().cpu()
    x0, y0 = b[:, 0].clamp(min=1), b[:, 1].clamp(min=1)
    x1, y1 = b[:, 2].clamp(max=W), b[:, 3].clamp(max=H)
    out = []
    for k in range(len(b)):
        if y1[k] > y0[k] - 1 and x1[k] > x0[k] - 1:
            crop = img[:, :, int(y0[k]) - 1:int(y1[k]), int(x0[k]) - 1:int(x1[k])]
            out.append(F.interpolate(crop, size=(size, size), mode="area"))
    return torch.cat(out) if out else img.new_zeros(0, 3, size, size)


@dataclasses.dataclass
class Detections:
    """Faces found in one picture: ``boxes`` ``[N, 4]`` (x0, y0, x1, y1, pixels), ``scores`` ``[N]`` (the
    O-Net face probability), ``landmarks`` ``[N, 5, 2]`` (x, y: eyes, nose, mouth corners)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class MTCNN(nn.Module):
    """The three networks with their weights, and the full detection cascade.

    >>> det = MTCNN()
    >>> found = det.detect(x)               # x: [1, 3, H, W] RGB in [0, 1]
    """

    def __init__(self, min_face_size: int = MIN_FACE_SIZE, thresholds=THRESHOLDS, factor: float = FACTOR):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name in ("pnet", "rnet", "onet"):
            getattr(self, name).load_state_dict(torch.load(weights_path(name), map_location="cpu", weights_only=True))
        self.min_face_size, self.thresholds, self.factor = int(min_face_size), tuple(thresholds), float(factor)
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def check_size(self, H: int, W: int) -> None:
        if min(H, W) < self.min_face_size:
            raise FastdreamError(f"a {W}x{H} picture is too small for the face detector: it finds faces of at "
                                 f"least {self.min_face_size} pixels, so the picture needs at least "
                                 f"{self.min_face_size} pixels on each side")

    def scales(self, H: int, W: int) -> list[float]:
        """The pyramid: picture scales at which P-Net's 12-pixel window sees faces of ``min_face_size``
        pixels and up, each ``factor`` times the last, while the picture stays at least 12 pixels."""
        m = PNET_SIZE / self.min_face_size
        side, s, out = min(H, W) * m, m, []
        while side >= PNET_SIZE:
            out.append(s)
            s *= self.factor
            side *= self.factor
        return out

    @torch.no_grad()
    def detect(self, x: torch.Tensor) -> Detections:
        """Run the cascade on ``x`` ``[1, 3, H, W]`` (RGB in [0, 1]); faces sorted by nothing in particular
        (the order of the last NMS)."""
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise FastdreamError(f"the face detector takes one RGB picture [1, 3, H, W], got {tuple(x.shape)}")
        dev = next(self.parameters()).device
        img = x.detach().to(dev, torch.float32) * 255.0
        H, W = img.shape[-2:]
        self.check_size(H, W)
        empty = Detections(img.new_zeros(0, 4), img.new_zeros(0), img.new_zeros(0, 5, 2))
        # stage 1: proposals on the pyramid
        found = []
        for s in self.scales(H, W):
            level = F.interpolate(img, size=(int(H * s + 1), int(W * s + 1)), mode="area")
            reg, logits = self.pnet((level - 127.5) * 0.0078125)
            prob = logits.softmax(1)[0, 1]                                     # [h', w']
            ys, xs = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            if len(ys) == 0:
                continue
            cell = torch.stack([xs, ys], 1).to(img.dtype)
            q1 = ((2 * cell + 1) / s).floor()
            q2 = ((2 * cell + PNET_SIZE) / s).floor()
            boxes = torch.cat([q1, q2, prob[ys, xs, None], reg[0, :, ys, xs].t()], 1)  # [n, 9]
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return empty
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * w, boxes[:, 1] + boxes[:, 6] * h,
                             boxes[:, 2] + boxes[:, 7] * w, boxes[:, 3] + boxes[:, 8] * h, boxes[:, 4]], 1)
        boxes = _square(boxes)
        # stage 2: refinement
        reg, logits = self.rnet(normalize(_crops(img, boxes, RNET_SIZE) / 255.0))
        score = logits.softmax(1)[:, 1]
        ok = score > self.thresholds[1]
        boxes = torch.cat([boxes[ok, :4], score[ok, None]], 1)
        reg = reg[ok]
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        if len(boxes) == 0:
            return empty
        # stage 3: output
        reg, marks, logits = self.onet(normalize(_crops(img, boxes, ONET_SIZE) / 255.0))
        score = logits.softmax(1)[:, 1]
        ok = score > self.thresholds[2]
        boxes, reg, marks = torch.cat([boxes[ok, :4], score[ok, None]], 1), reg[ok], marks[ok]
        bw = boxes[:, 2] - boxes[:, 0] + 1
        bh = boxes[:, 3] - boxes[:, 1] + 1
        px = bw[:, None] * marks[:, :5] + boxes[:, 0, None] - 1
        py = bh[:, None] * marks[:, 5:] + boxes[:, 1, None] - 1
        boxes = _regress(boxes, reg)
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")
        return Detections(boxes[keep, :4].cpu(), boxes[keep, 4].cpu(), torch.stack([px, py], -1)[keep].cpu())


@functools.lru_cache(maxsize=4)
def get_detector(device: str = "cpu") -> MTCNN:
    """One loaded MTCNN per device (the weights are read once)."""
    return MTCNN().to(device)
