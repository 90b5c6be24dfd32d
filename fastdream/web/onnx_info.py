"""What the Live tab needs to know about the ONNX dream filter, read from the model file."""
from __future__ import annotations

import pathlib


def filter_info(path: pathlib.Path | None) -> dict:
    """Where the filter is, how big, which size multiple its input needs, and its fastdream metadata;
    ``{"available": False, "message"}`` when there is none or it cannot be read."""
    if path is None or not path.is_file():
        where = f" ({path})" if path is not None else ""
        return {"available": False,
                "message": ("No dream filter is installed" + where + ". Start the server with "
                            "`fastdream serve --filter FILE.onnx` (make one with `fastdream distill` and "
                            "`fastdream export`).")}
    info = {"available": True, "url": "/filter.onnx", "name": path.name, "bytes": path.stat().st_size,
            "pad_multiple": 1, "metadata": {}}
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        meta = {p.key: p.value for p in m.metadata_props}
        info["metadata"] = {k: v for k, v in meta.items() if k in ("fastdream.format", "fastdream.version",
                                                                   "fastdream.pad_multiple")}
        info["pad_multiple"] = max(1, int(meta.get("fastdream.pad_multiple", "1")))
        info["input"] = m.graph.input[0].name
        info["output"] = m.graph.output[0].name
    except ImportError:
        pass
    except Exception as e:
        return {"available": False, "message": f"The dream filter {path.name} cannot be read: {e}"}
    return info
