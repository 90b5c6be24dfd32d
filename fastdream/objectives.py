"""Dream objectives (re-exported from fastdream.engine.objectives): they add and scale like numbers.

>>> from fastdream.objectives import Layer, Channel, Neuron, ClassLogit
>>> obj = Layer("block9") + 0.5 * Channel("block11", [3, 40]) - ClassLogit(281)
>>> obj = BoxView(ClassLogit(107) + BNPrior(0.002), box=(0.0, 0.5, 0.5, 1.0)) + Face((0.5, 0.1, 0.9, 0.4))
"""
from fastdream.engine.faces import Face, FaceSuppress  # noqa: F401
from fastdream.engine.objectives import (  # noqa: F401
    BNPrior,
    BoxView,
    Channel,
    ClassLogit,
    Context,
    Guide,
    L2Prior,
    Layer,
    Masked,
    Neuron,
    Objective,
    PixelGuide,
    Sum,
    TVPrior,
)

__all__ = ["Objective", "Layer", "Channel", "Neuron", "ClassLogit", "Guide", "PixelGuide", "Masked", "Sum", "Context",
           "BNPrior", "TVPrior", "L2Prior", "BoxView", "Face", "FaceSuppress"]
