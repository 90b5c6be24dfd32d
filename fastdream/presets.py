"""Named dreams that look good on the default backbone (EfficientNet-Lite0), chosen by looking at the
pictures. Each is objective strings plus schedule overrides; command-line flags override a preset."""
from __future__ import annotations

from fastdream.errors import FastdreamError, suggest

PRESETS: dict[str, dict] = {
    "classic": {
        "description": "the DeepDream look: swirls, eyes and animal fur from a middle block (block9)",
        "layers": ["block9"],
        "config": {},
    },
    "deep": {
        "description": "deeper block (block12): whole animal faces, dogs, birds and buildings",
        "layers": ["block12"],
        "config": {"steps": 12, "step_size": 0.015},
    },
    "textures": {
        "description": "early block (block5): fine patterned textures and brush-stroke detail",
        "layers": ["block5"],
        "config": {"octaves": 3, "step_size": 0.01},
    },
    "soft": {
        "description": "classic with smoothed gradients (a cascade of three Gaussians): calmer, painterly",
        "layers": ["block9"],
        "config": {"sigma": (0.5, 1.0, 2.0), "steps": 14, "step_size": 0.014},
    },
    "recursive": {
        "description": ("the recursion variant of a published dream dataset: 2 recursions, rescale 0.85, "
                        "blend 0.15 (published as 100 iterations per round, step 0.02 on InceptionV3; here "
                        "fewer steps with the same rescale and blend)"),
        "layers": ["block9"],
        "config": {"recursions": 2, "recursion_scale": 0.85, "recursion_blend": 0.15, "step_size": 0.02,
                   "octaves": 1, "steps": 20},
    },
}

DEFAULT_PRESET = "classic"


def get_preset(name: str) -> dict:
    if name not in PRESETS:
        raise FastdreamError(suggest(name, PRESETS, "preset"))
    return PRESETS[name]


def describe() -> str:
    return "; ".join(f"{k}: {v['description']}" for k, v in PRESETS.items())
