"""Dream objectives (re-exported from fastdream.engine.objectives): they add and scale like numbers.

>>> from fastdream.objectives import Layer, Channel, Neuron, ClassLogit
>>> obj = Layer("block9") + 0.5 * Channel("block11", [3, 40]) - ClassLogit(281)
"""
from fastdream.engine.objectives import (  # noqa: F401
    Channel,
    ClassLogit,
    Context,
    Guide,
    Layer,
    Masked,
    Neuron,
    Objective,
    PixelGuide,
    Sum,
)

__all__ = ["Objective", "Layer", "Channel", "Neuron", "ClassLogit", "Guide", "PixelGuide", "Masked", "Sum", "Context"]
