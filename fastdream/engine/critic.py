"""A learned realism critic, as a prior (``--prior critic``): a small patch discriminator trained to tell
crops of photos from crops of dreams, whose "photo" logit the dream then climbs.

It was tried against the BatchNorm prior on the class-in-box cases (docs/priors.md, "A learned
critic"); it is not a default. No trained critic ships with fastdream: ``train_critic`` makes one from
folders of photos and dreams, and ``CriticPrior`` loads it from ``FASTDREAM_CRITIC`` or a path.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from fastdream.engine.objectives import Prior
from fastdream.errors import FastdreamError

PATCH = 32


class PatchCritic(nn.Module):
    """A PatchGAN-style discriminator: ``[B, 3, H, W]`` in [0, 1] -> ``[B, 1, H/8, W/8]`` logits, one per
    overlapping patch of about 30 pixels ("photo" positive)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 3, 1, 1),
        )

    def forward(self, x):
        return self.net(2 * x - 1)


def _patches(pictures: list[torch.Tensor], n: int, gen: torch.Generator) -> torch.Tensor:
    out = []
    for _ in range(n):
        p = pictures[int(torch.randint(len(pictures), (1,), generator=gen))]
        H, W = p.shape[-2:]
        y = int(torch.randint(max(1, H - PATCH + 1), (1,), generator=gen))
        x = int(torch.randint(max(1, W - PATCH + 1), (1,), generator=gen))
        out.append(p[..., y:y + PATCH, x:x + PATCH])
    return torch.cat(out)


def train_critic(photos: list[torch.Tensor], dreams: list[torch.Tensor], steps: int = 400, batch: int = 32,
                 seed: int = 0, lr: float = 2e-4) -> tuple[PatchCritic, dict]:
    """Train a critic on 32-pixel crops: ``photos`` and ``dreams`` are lists of ``[1, 3, H, W]`` pictures.
    Returns the critic (eval mode, frozen) and ``{"accuracy": held-out patch accuracy, "loss": last loss}``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    critic = PatchCritic()
    opt = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.999))
    loss = torch.zeros(())
    for _ in range(steps):
        real, fake = _patches(photos, batch, gen), _patches(dreams, batch, gen)
        lr_, lf = critic(real), critic(fake)
        loss = F.softplus(-lr_).mean() + F.softplus(lf).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    critic.eval()
    for p in critic.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        real, fake = _patches(photos, 256, gen), _patches(dreams, 256, gen)
        acc = 0.5 * (float((critic(real).mean((1, 2, 3)) > 0).float().mean())
                     + float((critic(fake).mean((1, 2, 3)) < 0).float().mean()))
    return critic, {"accuracy": acc, "loss": float(loss.detach())}


class CriticPrior(Prior):
    """``weight * softplus(-critic logit)`` averaged over the patches: how un-photo-like the picture
    looks to a trained :class:`PatchCritic` (from ``path``, or the file ``FASTDREAM_CRITIC`` names)."""

    def __init__(self, weight: float = 1.0, critic: PatchCritic | None = None, path: str | None = None,
                 device="cpu"):
        super().__init__(weight)
        if critic is None:
            path = path or os.environ.get("FASTDREAM_CRITIC")
            if not path or not os.path.exists(path):
                raise FastdreamError("--prior critic needs a trained critic: no critic ships with fastdream (it did "
                                     "not beat the BatchNorm prior, docs/priors.md); set FASTDREAM_CRITIC to a file "
                                     "saved by fastdream.engine.critic.save_critic")
            critic = PatchCritic()
            critic.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            critic.eval()
            for p in critic.parameters():
                p.requires_grad_(False)
        self.critic = critic.to(device)

    def penalty(self, acts, ctx):
        x = ctx.image
        return F.softplus(-self.critic.to(x.device)(x)).flatten(1).mean(1)


def save_critic(critic: PatchCritic, path) -> None:
    torch.save(critic.state_dict(), path)
