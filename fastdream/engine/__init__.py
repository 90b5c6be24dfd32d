"""The optimization loops: the dream (octaves, tiling, jitter, the step), its objectives, and how a
dream's objective is put together from objective objects (:mod:`fastdream.engine.compose`). Objects in,
objects out: the command line's strings are parsed above this layer, in :mod:`fastdream.objective_text`."""
