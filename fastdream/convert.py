"""Pictures in the forms people have them (path, PIL image, numpy array, tensor), to and from the
engine's ``[1, 3, H, W]`` float32 tensors in [0, 1]."""
from __future__ import annotations

import os
import pathlib
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from fastdream.errors import InputError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when fastdream's CUDA kernels and a GPU are available, else the CPU."""
    from fastdream import has_cuda

    if isinstance(device, torch.device):
        return device
    d = (device or "auto").lower()
    if d == "auto":
        return torch.device("cuda") if (torch.cuda.is_available() and has_cuda()) else torch.device("cpu")
    if d == "cpu":
        return torch.device("cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: this torch build sees no CUDA GPU")
        if not has_cuda():
            raise InputError("--device cuda: fastdream was built without CUDA kernels (see fastdream.build_info())")
        return torch.device(d)
    raise InputError(f"unknown device {device!r}; choose auto, cpu or cuda")


def to_tensor(image: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """``(picture [1, 3, H, W] float32 in [0, 1], back)`` where ``back(result)`` returns the result in
    the caller's form: PIL for a path or PIL image, numpy (same dtype and layout) for numpy, a tensor of
    the same shape, dtype and device for a tensor."""
    if isinstance(image, (str, os.PathLike, pathlib.Path)):
        from fastdream.imageio import load_image, tensor_to_pil

        t, _ = load_image(image)
        return t, tensor_to_pil
    if isinstance(image, Image.Image):
        from fastdream.imageio import pil_to_tensor, tensor_to_pil

        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None

        def back_pil(r):
            out = tensor_to_pil(r)
            if alpha is not None:
                out.putalpha(alpha)
            return out

        return pil_to_tensor(image), back_pil
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise InputError(f"a numpy picture must be [H, W], [H, W, 3] or [H, W, 4], got shape {image.shape}")
        extra = a[..., 3:] if a.shape[2] == 4 else None
        if np.issubdtype(a.dtype, np.integer):
            scale = 65535.0 if a.dtype == np.uint16 else 255.0
            rgb = a[..., :3].astype(np.float32) / scale
        else:
            scale = None
            rgb = a[..., :3].astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].contiguous().clamp_(0, 1)

        def back_np(r):
            out = r[0].permute(1, 2, 0).detach().cpu().numpy()
            if scale is not None:
                out = np.clip(np.round(out * scale), 0, scale).astype(image.dtype)
            else:
                out = out.astype(image.dtype)
            if image.ndim == 2:
                return out.mean(2).astype(image.dtype)
            if extra is not None:
                out = np.concatenate([out, extra], axis=2)
            return out

        return t, back_np
    if isinstance(image, torch.Tensor):
        x = image.detach()
        squeeze = x.dim() == 3
        if squeeze:
            x = x[None]
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise InputError(f"a tensor picture must be [3, H, W] or [1, 3, H, W], got shape {tuple(image.shape)}")
        dtype, device = image.dtype, image.device
        t = x.float().contiguous()
        if not dtype.is_floating_point:
            t = t / 255.0

        def back_t(r):
            r = r.to(device)
            r = (r * 255.0).round().clamp(0, 255).to(dtype) if not dtype.is_floating_point else r.to(dtype)
            return r[0] if squeeze else r

        return t, back_t
    raise InputError(f"cannot dream a {type(image).__name__}; give a path, PIL image, numpy array or tensor")
