"""Dream objectives (re-exported from fastdream.engine.objectives): they add and scale like numbers.

>>> from fastdream.objectives import Layer, Channel, Neuron, ClassLogit
>>> obj = Layer("block9") + 0.5 * Channel("block11", [3, 40]) - ClassLogit(281)
>>> obj = BoxView(ClassLogit(107) + BNPrior(0.002), box=(0.5, 0.0, 1.0, 0.5)) + Face((0.1, 0.5, 0.4, 0.9))

Boxes are ``(x0, y0, x1, y1)``, fractions of the picture (``Box``), as on the command line and in PIL.
"""
from fastdream.engine.faces import Face, FaceSuppress  # noqa: F401
from fastdream.engine.compose import PriorSpec, Term, dream_objective  # noqa: F401
from fastdream.engine.objectives import (  # noqa: F401
    BNPrior,
    Box,
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

__all__ = ["Box", "Term", "PriorSpec", "dream_objective", "Objective", "Layer", "Channel", "Neuron", "ClassLogit", "Guide", "PixelGuide", "Masked", "Sum", "Context",
           "BNPrior", "TVPrior", "L2Prior", "BoxView", "Face", "FaceSuppress"]
