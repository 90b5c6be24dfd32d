"""Feature visualization, feature inversion and classifier fine-tuning.

>>> from fastdream.featvis import visualize, invert, finetune

The engines live in the submodules of the same names (``fastdream.featvis.visualize`` ...); they are
imported here first so that the package attributes stay bound to the API functions below (importing a
submodule later would otherwise rebind the attribute to the module).
"""
from __future__ import annotations

import importlib as _importlib

for _name in ("visualize", "invert", "finetune"):
    _importlib.import_module(f"fastdream.featvis.{_name}")

from fastdream.featvis.api import finetune, invert, visualize  # noqa: E402

__all__ = ["finetune", "invert", "visualize"]
