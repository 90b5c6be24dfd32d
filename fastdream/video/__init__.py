"""Video: decode/encode (PyAV), optical flow and temporal coherence (OpenCV), live streams, the feedback
zoom and resumable jobs. Frames on the host are ``[H, W, 3]`` uint8 RGB; processors see tensors
``[1, 3, H, W]`` in [0, 1]."""
from fastdream.video.coherence import Coherence, DreamProcessor, FrameProcessor, as_processor, frame_seed

__all__ = ["Coherence", "DreamProcessor", "FrameProcessor", "as_processor", "frame_seed"]
