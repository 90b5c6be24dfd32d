"""The Live tab's dream mode on the server: /api/live (WebSocket): settings, frames in, live dream out;
one stream at a time with the others told their place in line; bad settings and frames refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")
cv2 = pytest.importorskip("cv2")

from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from conftest import DATA  # noqa: E402
from fastdream.web.app import ServerConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cfg = ServerConfig(filter_path=str(tmp_path_factory.mktemp("nofilter") / "none.onnx"), max_queued=1)
    with TestClient(create_app(cfg)) as c:
        yield c


def jpeg(shift=0, size=(96, 72)):
    img = cv2.imread(str(DATA / "chelsea_224.jpg"))
    img = np.roll(cv2.resize(img, size, interpolation=cv2.INTER_AREA), shift, axis=1)
    return img[..., ::-1], cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def rgb(data: bytes):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def test_web_live_dreams_frames(client):
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(json.dumps({"preset": "classic", "steps_per_frame": 2}))
        ready = json.loads(ws.receive_text())
        assert ready["type"] == "ready" and ready["steps_per_frame"] == 2
        diffs = []
        for i in range(6):
            src, data = jpeg(shift=i)
            ws.send_bytes(data)
            out = rgb(ws.receive_bytes())
            assert out.shape == src.shape
            diffs.append(np.abs(out.astype(float) - src).mean())
        assert diffs[-1] > 4 and diffs[-1] > diffs[0]     # a dream that builds up over the frames
    assert client.get("/api/status").json()["live_served"] >= 1


def test_web_live_one_stream_at_a_time(client):
    with client.websocket_connect("/api/live") as a:
        a.send_text(json.dumps({}))
        assert json.loads(a.receive_text())["type"] == "ready"
        with client.websocket_connect("/api/live") as b:
            b.send_text(json.dumps({}))
            assert json.loads(b.receive_text()) == {"type": "queued", "position": 1}
            assert client.get("/api/status").json()["live_waiting"] == 1
            with client.websocket_connect("/api/live") as c:   # max_queued=1: the line is full
                c.send_text(json.dumps({}))
                msg = json.loads(c.receive_text())
                assert msg["type"] == "error" and "busy" in msg["message"]
            a.close()
            assert json.loads(b.receive_text())["type"] == "ready"   # the next in line streams now
            b.send_bytes(jpeg()[1])
            assert rgb(b.receive_bytes()).shape == (72, 96, 3)


@pytest.mark.parametrize("settings,want", [
    ({"steps_per_frame": 0}, "steps_per_frame"), ({"steps_per_frame": "two"}, "steps_per_frame"),
    ({"preset": "nosuch"}, "unknown preset"), ({"layer": "../../etc"}, "layer"), ("not json", "JSON")])
def test_web_live_bad_settings(client, settings, want):
    with client.websocket_connect("/api/live") as ws:
        ws.send_text(settings if isinstance(settings, str) else json.dumps(settings))
        msg = json.loads(ws.receive_text())
        assert msg["type"] == "error" and want in msg["message"]
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()


@pytest.mark.parametrize("frame,want", [(b"GIF89a not a jpeg", "JPEG or PNG"), (b"\xff\xd8\xff broken", "decoded"),
                                        ("big", "pixels per side")])
def test_web_live_bad_frames(client, frame, want):
    if frame == "big":
        frame = cv2.imencode(".jpg", np.zeros((20, 1400, 3), np.uint8))[1].tobytes()
    with client.websocket_connect("/api/live") as ws:
        ws.send_text("{}")
        assert json.loads(ws.receive_text())["type"] == "ready"
        ws.send_bytes(frame)
        msg = json.loads(ws.receive_text())
        assert msg["type"] == "error" and want in msg["message"]


def test_web_live_refuses_other_origins(client):
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/api/live", headers={"origin": "http://evil.example"}) as ws:
            ws.receive_text()
