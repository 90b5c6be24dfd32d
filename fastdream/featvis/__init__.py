"""Feature visualization, feature inversion and classifier fine-tuning.

>>> from fastdream.featvis import visualize, invert, finetune
"""
from __future__ import annotations

from fastdream.featvis.api import finetune, invert, visualize

__all__ = ["finetune", "invert", "visualize"]
