"""Helpers shared by the web tests: a stand-in dream filter, a server on a free loopback port."""
from __future__ import annotations

import contextlib
import pathlib
import socket
import threading
import time


def export_standin_filter(path, pad_multiple: int = 32) -> pathlib.Path:
    """A tiny ONNX 'dream filter' (a 3x3 conv residual net) with the real filter's contract: input
    ``image`` float32 [N, 3, H, W] in [0, 1], output ``dream`` the same, dynamic N/H/W, and the metadata
    key ``fastdream.pad_multiple`` (32 here, so that the page's padding is exercised at 320x240)."""
    import warnings

    import onnx
    import torch

    class Standin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 3, 3, padding=1)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)

        def forward(self, x):  # [N, 3, H, W] -> [N, 3, H, W]
            return (x + 0.5 * torch.tanh(self.conv2(torch.relu(self.conv1(x))))).clamp(0, 1)

    path = pathlib.Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Standin().eval(), (torch.rand(1, 3, 64, 96),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["dream"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "dream": {0: "batch", 2: "height", 3: "width"}})
    m = onnx.load(str(path))
    for k, v in {"fastdream.format": "fastdream-filter-v1", "fastdream.pad_multiple": str(pad_multiple)}.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(config):
    """Run ``create_app(config)`` under uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    from fastdream.web.app import create_app

    port = free_port()
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=1))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 30 or not t.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        t.join(timeout=10)
