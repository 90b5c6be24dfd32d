"""Distilled dream filters: teacher pairs, a feed-forward generator, training, ONNX export and runtime.

See ``fastdream.distill.api`` for the workflow in Python and ``docs/distill.md`` for the commands.
"""
