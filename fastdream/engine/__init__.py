"""The optimization loops: the dream (octaves, tiling, jitter, the step) and its objectives."""
