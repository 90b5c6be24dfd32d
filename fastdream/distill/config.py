"""The settings of `distill train` (no torch import: the CLI builds its parser from these defaults)."""
from __future__ import annotations

import dataclasses
import math

from fastdream.errors import FastdreamError

FEATURE_NORMS = ("energy", "unit")  # the perceptual loss: MSE over the target's mean square, or LPIPS-style


@dataclasses.dataclass
class TrainConfig:
    steps: int = 6000
    batch: int = 4
    crop: int = 256
    crop_align: int = 1         # crops start at multiples of this many pixels of the pair, unmirrored (> 1)
    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    version: int = 2            # generator layout (distill.generator): 2 DreamNet, 1 the first filter's
    width: int = 32
    blocks: int = 6
    deep: int = 192
    mid_blocks: int = 2
    train_encoder: bool = False  # v3: the encoder's weights learn too (default: the backbone's, frozen)
    coarse: bool = False        # v3: a second encoder pass at half size, joined at 1/16 (GeneratorConfig.coarse)
    output: str = "resize"      # v3: the output stage, resize | phases (GeneratorConfig.output)
    fine_blocks: int = 0        # v3: residual blocks after the decoder's 1/4 and 1/2 stages
    stem_path: bool = False     # v3: the stem's vector-Jacobian product draws pixel-fine detail (GeneratorConfig)
    block0_path: bool = False   # v3: ...and block0's before it (GeneratorConfig)
    padding: str = "zeros"
    pixel_weight: float = 1.0
    feature_weight: float = 1.0
    feature_layers: list = dataclasses.field(default_factory=lambda: ["block2", "block5", "block9", "block12"])
    feature_norm: str = "energy"  # energy: MSE over the target's mean square; unit: LPIPS-style (per position)
    adversarial_weight: float = 0.2   # the patch discriminator's term (0: no discriminator)
    adversarial_start: int = 800      # reconstruction-only steps before the discriminator joins
    disc_width: int = 32
    disc_scales: int = 1            # 2..4: discriminators of the pair shrunk by 2, 4, 8 beside it
    disc_highpass: float = 0.0      # > 0: the discriminator sees only the dream's fine band (sigma, px)
    disc_lr: float = 4e-4
    objective_weight: float = 0.0
    objective_target: float = 1.0  # the objective term is satisfied at this multiple of the teacher's objective
    objective_patch: int = 32      # ...in every patch of this many pixels (0: over the whole crop)
    objective_channels: bool = False  # ...and in every channel of a layer objective
    style_weight: float = 1.0   # Gram-matrix (texture statistics) loss against the teacher's dream
    style_layers: list = dataclasses.field(default_factory=lambda: ["block2", "block5", "block9"])
    loss_margin: int = 16       # the backbone terms see each crop mirrored outwards by this many pixels
    temporal_weight: float = 0.5  # shift consistency (stable video; the filter follows the picture, not the grid)
    grid_weight: float = 0.0    # the output's 2-pixel grid beyond the teacher's (losses.grid_excess)
    temporal_shift: int = 6
    photos: str | None = None   # a folder of photos: `unpaired` more crops per step climb the objective only
    unpaired: int = 0
    val_every: int = 10         # pair i is held out when i % val_every == 0
    eval_every: int = 100
    save_every: int = 50
    seed: int = 0
    precision: str = "auto"     # the backbone's in the loss terms: auto | fp32 | bf16 | fp16
    device: str = "auto"        # auto | cpu | cuda (under torchrun: one GPU per rank)
    until: int | None = None    # stop after this step (the learning-rate schedule still follows `steps`)
    init: str | None = None     # start from an exported float filter's weights (a path or a shipped name)

    def validate(self) -> None:
        for name in ("steps", "batch", "crop", "crop_align", "val_every", "eval_every", "save_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise FastdreamError(f"{name} must be a whole number >= 1, got {v!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise FastdreamError(f"learning rate must be positive, got {self.lr!r}")
        if not (0 < self.objective_target <= 10 and math.isfinite(self.objective_target)):
            raise FastdreamError(f"objective target must be in (0, 10], got {self.objective_target!r}")
        for name in ("pixel_weight", "feature_weight", "objective_weight", "style_weight", "temporal_weight", "grid_weight",
                     "adversarial_weight"):
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
        if self.feature_norm not in FEATURE_NORMS:
            raise FastdreamError(f"feature norm must be one of {', '.join(FEATURE_NORMS)}, got {self.feature_norm!r}")
        if self.feature_weight > 0 and not self.feature_layers:
            raise FastdreamError("a feature loss needs at least one backbone layer")
        if not isinstance(self.adversarial_start, int) or self.adversarial_start < 0:
            raise FastdreamError(f"adversarial start must be a whole number of steps >= 0, got {self.adversarial_start!r}")
        if not (0 <= self.disc_highpass <= 8 and math.isfinite(self.disc_highpass)):
            raise FastdreamError(f"discriminator high-pass sigma must be in 0..8 pixels, got {self.disc_highpass!r}")
        if not (self.disc_lr > 0 and math.isfinite(self.disc_lr)):
            raise FastdreamError(f"discriminator learning rate must be positive, got {self.disc_lr!r}")
        if not isinstance(self.disc_width, int) or not 4 <= self.disc_width <= 512:
            raise FastdreamError(f"discriminator width must be a whole number in 4..512, got {self.disc_width!r}")
        if not isinstance(self.disc_scales, int) or not 1 <= self.disc_scales <= 4:
            raise FastdreamError(f"discriminator scales must be a whole number in 1..4, got {self.disc_scales!r}")
        if self.adversarial_weight > 0 and self.crop < 16 << (self.disc_scales - 1):
            raise FastdreamError(f"a discriminator of {self.disc_scales} scale(s) needs crops of at least "
                                 f"{16 << (self.disc_scales - 1)} pixels, got {self.crop}")
        if self.until is not None and (not isinstance(self.until, int) or not 1 <= self.until <= self.steps):
            raise FastdreamError(f"until must be a step in 1..{self.steps}, got {self.until!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise FastdreamError(f"training device must be auto, cpu or cuda, got {self.device!r}")
        if not self.init:  # with --init the layout comes from the file (checked by validate_layout then)
            self.validate_layout()

    def validate_layout(self) -> None:
        self.generator().validate()
        if self.train_encoder and self.version != 3:
            raise FastdreamError("--train-encoder is for the v3 generator, whose encoder is the backbone's blocks")

    def generator(self):
        """The generator's :class:`~fastdream.distill.generator.GeneratorConfig`."""
        from fastdream.distill.generator import GeneratorConfig

        return GeneratorConfig(width=self.width, blocks=self.blocks, padding=self.padding, version=self.version,
                               deep=self.deep, mid_blocks=self.mid_blocks, coarse=self.coarse,
                               output=self.output, fine_blocks=self.fine_blocks, stem_path=self.stem_path,
                               block0_path=self.block0_path)

    def lr_at(self, step: int) -> float:
        t = min(1.0, step / max(1, self.steps))
        lo = self.lr * self.min_lr_fraction
        return lo + (self.lr - lo) * 0.5 * (1 + math.cos(math.pi * t))
