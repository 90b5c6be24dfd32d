"""Backbones: the networks fastdream dreams with, as frozen modules with named taps.

>>> from fastdream.backbones import load_backbone
>>> bb = load_backbone()                          # embedded EfficientNet-Lite0, ImageNet, offline
>>> [name for name, shape in bb.layers(224)][:3]
['stem', 'block0', 'block1']
>>> feats = bb.forward_taps(torch.rand(1, 3, 224, 224), ["block5"])   # stops after block5
"""
from __future__ import annotations

from fastdream.backbones.base import LOGITS, Backbone
from fastdream.backbones.classes import ClassNames, imagenet_class_names, imagenet_classes
from fastdream.backbones.efficientnet_lite import EfficientNetLite
from fastdream.backbones.loading import (
    available_backbones,
    get_backbone,
    load_backbone,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "Backbone",
    "ClassNames",
    "EfficientNetLite",
    "LOGITS",
    "available_backbones",
    "get_backbone",
    "imagenet_class_names",
    "imagenet_classes",
    "load_backbone",
    "load_checkpoint",
    "save_checkpoint",
]
