"""The web server's API (fastdream serve) through Starlette's TestClient: uploads, bad uploads, the queue
bound, cancel, time limit, cleanup, host check, the filter and the vendored runtime."""
from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("multipart")
pytest.importorskip("httpx")

import warnings  # noqa: E402

from PIL import Image  # noqa: E402

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from fastdream.web.app import VENDOR, ServerConfig, create_app  # noqa: E402
from web_helpers import export_standin_filter  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = pathlib.Path(__file__).resolve().parents[1]
PHOTO = (REPO / "tests" / "data" / "chelsea_224.jpg").read_bytes()
TINY = {"octaves": "1", "steps": "2", "max_size": "64"}
LONG = {"octaves": "1", "steps": "200", "max_size": "224", "jitter": "8"}


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    """Uploads are written (briefly) to the temporary folder: point it at an empty one to watch it."""
    import tempfile

    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _left_in(d):
    """What is left in the temporary folder, less torch's own cache folder (``torchinductor_USER``: the
    first call of a native op (a torch custom op) in the process imports torch._dynamo, which makes it
    there; so this test failed when it ran alone)."""
    return [p for p in d.iterdir() if not p.name.startswith("torchinductor_")]


def client(**kw) -> TestClient:
    return TestClient(create_app(ServerConfig(**kw)))


def submit(c, data=None, image=PHOTO, name="photo.jpg", **files):
    return c.post("/api/jobs", files={"image": (name, image, "image/jpeg"), **files}, data=data or TINY)


def wait_status(c, jid, statuses=("done", "error", "cancelled"), timeout=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = c.get(f"/api/jobs/{jid}")
        if r.status_code == 404 or r.json()["status"] in statuses:
            return r
        time.sleep(0.05)
    raise AssertionError(f"job {jid} still {r.json()} after {timeout} s")


def test_web_dream_job_runs_and_is_forgotten_after_download(upload_dir):
    with client() as c:
        r = submit(c, {**TINY, "region": "0.1,0.1,0.6,0.7", "layer": "block9", "class": "tabby"},
                   name="../../etc/passwd")
        assert r.status_code == 201, r.text
        jid = r.json()["id"]
        events, done = [], None
        with c.stream("GET", f"/api/jobs/{jid}/events") as s:
            ev = None
            for line in s.iter_lines():
                if line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("data: "):
                    events.append(ev)
                    if ev == "done":
                        done = json.loads(line[6:])
        assert "octave" in events and "state" in events and events[-1] == "done"
        rep = done["report"]
        assert rep["input_size"] == [224, 224] and rep["output_size"] == [224, 224] and rep["steps"] == 2
        assert rep["request"]["region"] == "0.1000,0.1000,0.6000,0.7000"
        # the class in the region is drawn for the default backbone and EfficientNet-Lite1, as on the command line
        assert rep["params"]["class_backbones"] == ["efficientnet-lite1"]
        assert "backbone=efficientnet-lite1" in rep["params"]["objective"]
        assert c.get(f"/api/jobs/{jid}/report").json()["steps"] == 2
        r = c.get(done["result"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (224, 224)
        assert c.get(done["result"]).status_code == 404        # downloaded once, then forgotten
        assert c.get(f"/api/jobs/{jid}").status_code == 404
        st = c.get("/api/status").json()
        assert st["jobs_kept"] == 0 and st["queued"] == 0 and st["done"] == 1
    assert _left_in(upload_dir) == []                          # the upload's temporary file is gone
    assert not (REPO / "etc" / "passwd").exists()


def test_web_guide_picture_with_a_region():
    with client() as c:
        r = submit(c, {**TINY, "region": "0,0,0.5,0.5", "guide_weight": "2"}, guide=("g.png", PHOTO, "image/png"))
        assert r.status_code == 201, r.text
        r = wait_status(c, r.json()["id"]).json()
        assert r["status"] == "done", r
        rep = c.get(f"/api/jobs/{r['id']}/report").json()
        assert rep["request"]["guide"] and "Guide" in rep["params"]["objective"]
        r = submit(c, TINY, guide=("g.png", b"GIF89a broken", "image/gif"))
        assert r.status_code == 400 and r.json()["error"].startswith("guide picture:")


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # 144 Mpx in ~20 kB
    return buf.getvalue()


@pytest.mark.parametrize("case", ["text", "empty", "truncated", "bomb", "ppm", "oversize", "no-image", "not-multipart"])
def test_web_bad_upload_gets_a_clear_message(case, upload_dir):
    with client(max_upload_mb=1.0) as c:
        if case == "text":
            r, want = submit(c, image=b"hello, not a picture"), "not a picture"
        elif case == "empty":
            r, want = submit(c, image=b""), "empty"
        elif case == "truncated":
            r, want = submit(c, image=PHOTO[: len(PHOTO) // 3]), "cannot read"
        elif case == "bomb":
            r, want = submit(c, image=_bomb_png(), name="bomb.png"), "decompression bomb"
        elif case == "ppm":
            buf = io.BytesIO()
            Image.new("RGB", (8, 8)).save(buf, format="PPM")
            r, want = submit(c, image=buf.getvalue()), "PPM"
        elif case == "oversize":
            r, want = submit(c, image=PHOTO + b"\0" * 1_100_000), "limit"
        elif case == "no-image":
            r, want = c.post("/api/jobs", files={"other": ("x.jpg", PHOTO, "image/jpeg")}, data=TINY), "'image'"
        else:
            r, want = c.post("/api/jobs", content=PHOTO, headers={"content-type": "image/jpeg"}), "multipart"
        assert r.status_code in (400, 413, 415), r.text
        assert want in r.json()["error"], r.json()
        if case == "oversize":
            assert r.status_code == 413
        assert c.get("/api/status").json()["jobs_kept"] == 0
    assert _left_in(upload_dir) == []


@pytest.mark.parametrize("field,value,want", [
    ("region", "0.5,0.5,0.2,0.9", "region"), ("region", "/etc/passwd", "region"), ("layer", "blok9", "did you mean"),
    ("layer", "../x", "layer"), ("steps", "100000", "steps"), ("octaves", "two", "whole number"),
    ("preset", "nope", "unknown preset"), ("class", "not-a-class-xyz", "class"), ("jitter", "nan", "jitter"),
])
def test_web_bad_settings_are_refused_before_queueing(field, value, want):
    with client() as c:
        r = submit(c, {**TINY, field: value})
        assert r.status_code == 400, r.text
        assert want in r.json()["error"], r.json()
        assert c.get("/api/status").json()["jobs_kept"] == 0


def test_web_queue_bound_position_and_cancel():
    with client(max_queued=1) as c:
        a = submit(c, LONG).json()
        wait_status(c, a["id"], ("running",))
        b = submit(c, TINY).json()
        assert b["position"] == 1                                   # one job ahead of it
        r = submit(c, TINY)
        assert r.status_code == 429 and "queue is full" in r.json()["error"]
        assert c.post(f"/api/jobs/{b['id']}/cancel").status_code == 200    # a queued job
        assert c.get(f"/api/jobs/{b['id']}").json()["status"] == "cancelled"
        t0 = time.monotonic()
        c.post(f"/api/jobs/{a['id']}/cancel")                              # the running job
        r = wait_status(c, a["id"], ("cancelled",), timeout=30)
        assert r.json()["status"] == "cancelled" and time.monotonic() - t0 < 10
        assert "cancelled by the user" in r.json()["message"]
        assert c.get(f"/api/jobs/{a['id']}/result").status_code == 404
        c.post(f"/api/jobs/{a['id']}/cancel")                              # forget the finished job
        c.post(f"/api/jobs/{b['id']}/cancel")
        st = c.get("/api/status").json()
        assert st["jobs_kept"] == 0 and st["cancelled"] == 2
        assert c.post("/api/jobs/nope/cancel").status_code == 404


def test_web_job_time_limit_and_expiry():
    with client(job_timeout=0.5, ttl=0.3) as c:
        a = submit(c, LONG).json()
        r = wait_status(c, a["id"], ("cancelled", "error", "done"), timeout=30).json()
        assert r["status"] == "cancelled" and "time limit" in r["message"]
        b = submit(c, TINY).json()
        wait_status(c, b["id"], ("done",))
        time.sleep(0.5)
        assert c.get(f"/api/jobs/{b['id']}").status_code == 404            # not downloaded: expired
        st = c.get("/api/status").json()
        assert st["jobs_kept"] == 0 and st["expired"] == 1


def test_web_host_header_check():
    with TestClient(create_app(ServerConfig(allowed_hosts=["127.0.0.1", "localhost"])),
                    base_url="http://localhost:8000") as c:
        assert c.get("/api/status").status_code == 200
        r = c.get("/api/status", headers={"host": "evil.example:8000"})
        assert r.status_code == 400 and "Host" in r.json()["error"]


def test_web_page_filter_and_vendored_runtime(tmp_path):
    with client(filter_path=str(tmp_path / "missing.onnx")) as c:
        r = c.get("/")
        assert r.status_code == 200 and 'id="tab-live"' in r.text
        assert 'id="mode-filter"' in r.text and 'id="mode-dream"' in r.text   # the Live tab's two modes
        assert r.headers["cross-origin-embedder-policy"] == "require-corp"
        f = c.get("/api/options").json()["filter"]
        assert not f["available"] and "--filter" in f["message"]
        assert c.get("/filter.onnx").status_code == 404
    onnx_path = export_standin_filter(tmp_path / "f.onnx")
    with client(filter_path=str(onnx_path)) as c:
        o = c.get("/api/options").json()
        assert o["filter"]["available"] and o["filter"]["pad_multiple"] == 32 and o["filter"]["input"] == "image"
        assert "block9" in o["layers"] and any(p["name"] == "classic" for p in o["presets"])
        assert c.get("/filter.onnx").content == onnx_path.read_bytes()
        r = c.get("/static/vendor/onnxruntime-web/ort.webgpu.min.js")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        name = "ort-wasm-simd-threaded.asyncify.wasm"
        r = c.get(f"/static/vendor/onnxruntime-web/{name}", headers={"accept-encoding": "identity"})
        assert r.headers["content-type"] == "application/wasm" and r.headers["content-encoding"] == "gzip"
        assert gzip.decompress((VENDOR / (name + ".gz")).read_bytes())[:4] == b"\0asm"
        for bad in ("..%2F..%2Fapp.py", "LICENSE", ".hidden.js", "x.wasm"):
            assert c.get(f"/static/vendor/onnxruntime-web/{bad}").status_code == 404
    assert (VENDOR / "LICENSE").read_text().startswith("MIT License")
    assert "1.30.0" in (VENDOR / "VERSION.txt").read_text()


def test_web_serve_command_says_its_address_and_refuses_bad_flags(tmp_path, capsys):
    from fastdream.cli.main import main

    assert main(["serve", "--filter", str(tmp_path / "no.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    env = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-m", "fastdream.cli.main", "serve", "--port", "0",
                          "--filter", str(export_standin_filter(tmp_path / "f.onnx"))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        assert line.startswith("fastdream serve: http://127.0.0.1:") and line.rstrip().endswith("(Ctrl+C to stop)")
        import urllib.request

        url = line.split()[2]
        with urllib.request.urlopen(url + "api/status", timeout=10) as resp:
            assert json.load(resp)["queued"] == 0
    finally:
        p.terminate()
        p.wait(timeout=20)


def test_web_closing_the_event_stream_cancels_the_job():
    """A closed tab: its event stream drops, the server cancels the job and forgets it."""
    import http.client
    import urllib.parse

    from web_helpers import running_server

    with running_server(ServerConfig(allowed_hosts=["127.0.0.1"])) as (url, app):
        u = urllib.parse.urlparse(url)
        queue = app.state.queue
        boundary = "fastdreamtest"
        fields = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                         for k, v in LONG.items())
        body = (fields + f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n").encode() + PHOTO + f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("POST", "/api/jobs", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        jid = json.loads(conn.getresponse().read())["id"]
        conn.close()
        stream = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        stream.request("GET", f"/api/jobs/{jid}/events")
        resp = stream.getresponse()
        t0 = time.monotonic()
        while queue.get(jid).status != "running" and time.monotonic() - t0 < 30:
            resp.fp.readline()
        assert queue.get(jid).status == "running"
        stream.sock.shutdown(2)
        stream.close()
        t0 = time.monotonic()
        while queue.get(jid) is not None and time.monotonic() - t0 < 20:
            time.sleep(0.05)
        assert queue.get(jid) is None, queue.get(jid)
        st = queue.stats()
        assert st["cancelled"] == 1 and st["jobs_kept"] == 0 and not st["running"]
