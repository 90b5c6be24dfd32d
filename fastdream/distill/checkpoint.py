"""Checkpoints of the distillation: tensors, numbers and JSON strings only, so that
``torch.load(..., weights_only=True)`` reads them. They hold the generator's state and settings, the
optimizers' states, the discriminator's (when trained with one), the step, the training settings and
the teacher's parameters.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import torch

from fastdream.distill.generator import ARCHS, GeneratorConfig, build_generator
from fastdream.errors import InputError

CHECKPOINT_FORMAT = "fastdream-distill-checkpoint-v1"


def save_checkpoint(path, model, optimizer, step: int, cfg, teacher: dict, history: list,
                    discriminator=None, d_optimizer=None) -> None:
    from fastdream.imageio import atomic_write

    state = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.config.arch,
        "generator": json.dumps(dataclasses.asdict(model.config)),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "step": int(step),
        "train_config": json.dumps(dataclasses.asdict(cfg)),
        "teacher": json.dumps(teacher, default=str),
        "history": json.dumps(history),
    }
    if discriminator is not None:
        state["discriminator"] = {k: v.detach().cpu().clone() for k, v in discriminator.state_dict().items()}
        state["d_optimizer"] = d_optimizer.state_dict() if d_optimizer is not None else {}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def read_checkpoint(path) -> dict:
    """A checkpoint's contents, with the JSON fields decoded; clear errors for anything else."""
    p = pathlib.Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such checkpoint")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or pickled objects
        from fastdream.backbones.loading import load_error_reason

        raise InputError(f"{p}: not a fastdream filter checkpoint: {load_error_reason(e)}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{p}: not a fastdream filter checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if state.get("arch") not in ARCHS:
        raise InputError(f"{p}: a checkpoint of architecture {state.get('arch')!r}; this fastdream reads "
                         f"{' and '.join(map(repr, ARCHS))}")
    out = dict(state)
    for k in ("generator", "train_config", "teacher", "history"):
        out[k] = json.loads(state.get(k) or "null")
    if isinstance(out["generator"], dict) and "version" not in out["generator"]:  # made before v2 existed
        out["generator"]["version"] = ARCHS.index(state["arch"]) + 1
    return out


def load_generator(path):
    """The generator of a checkpoint (eval mode) and the checkpoint's contents."""
    ck = read_checkpoint(path)
    try:
        model = build_generator(GeneratorConfig(**ck["generator"]))
        model.load_state_dict(ck["model"], strict=True)
    except (TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(f"{path}: the weights do not fit the {ck['arch']} generator ({first[:160]})") from None
    return model.eval(), ck
