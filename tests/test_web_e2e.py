"""End to end in a real browser: headless Chromium (driven by playwright-core from npm) against
``fastdream serve`` on a free loopback port. The Dream tab dreams a photo and shows progress and the
result; the Live tab runs the ONNX filter on Chromium's fake camera with ONNX Runtime Web (WASM here).

What the tests need is installed before pytest (``.ci/run`` does it; the README's test set-up says how):
Chromium (Debian's ``chromium``), Node.js, and ``npm ci`` in tests/web (playwright-core, pinned by the lock
file). Without them the tests fail under CI (``CI`` set) and skip, saying why, elsewhere.
``FASTDREAM_WEB_SCREENSHOTS=docs/img`` also writes the page's screenshots.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.request

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")
pytest.importorskip("onnx")

from fastdream.web.app import ServerConfig  # noqa: E402
from web_helpers import export_standin_filter, running_server  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
WEB = REPO / "tests" / "web"
PHOTO = str(REPO / "tests" / "data" / "chelsea_224.jpg")
SHOTS = os.environ.get("FASTDREAM_WEB_SCREENSHOTS")

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _missing(what: str):
    """Fail under CI (its set-up installs the browser tools, so a missing one is a broken set-up); skip
    with the reason elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI installs it in .ci/run)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def browser_tools():
    """(node, chromium) installed beforehand (see the module doc)."""
    exe = _chromium()
    if exe is None:
        _missing("Chromium is not installed (apt-get install chromium)")
    node = shutil.which("node")
    if node is None:
        _missing("Node.js is needed to drive the browser (playwright-core)")
    if not (WEB / "node_modules" / "playwright-core" / "package.json").is_file():
        _missing("playwright-core is not installed in tests/web (cd tests/web && npm ci)")
    return node, exe


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    f = export_standin_filter(tmp_path_factory.mktemp("filter") / "standin.onnx")
    cfg = ServerConfig(filter_path=str(f), allowed_hosts=["127.0.0.1", "localhost"], max_queued=4)
    with running_server(cfg) as (url, app):
        yield url, app


def scenario(tools, name, url, timeout=180, **opts):
    node, exe = tools
    r = subprocess.run([node, "e2e.mjs", name, url, json.dumps(opts)], cwd=WEB, capture_output=True, text=True,
                       timeout=timeout, env={**os.environ, "CHROMIUM": exe})
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"{name}: no result (rc {r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}"
    out = json.loads(lines[-1])
    assert r.returncode == 0 and "error" not in out, f"{name}: {out.get('error')}"
    return out


def status(url) -> dict:
    with urllib.request.urlopen(url + "/api/status", timeout=10) as r:
        return json.load(r)


def test_web_e2e_dream_tab(browser_tools, server):
    url, _ = server
    shot = str(pathlib.Path(SHOTS) / "web_dream.png") if SHOTS else None
    out = scenario(browser_tools, "dream", url, photo=PHOTO, screenshot=shot,
                   settings={"octaves": 1, "steps": 2, "max_size": 128})
    assert "not a picture" in out["bad_upload_message"]
    assert out["region_text"].startswith("box 0.20, 0.25")
    assert out["saw_octave_preview"]
    assert any("Dreaming" in s for s in out["statuses"]), out["statuses"]
    assert out["final_status"].startswith("Done in")
    assert out["result_size"] == [224, 224] and out["downloads_visible"]
    assert out["report_name"] == "fastdream-report.json"
    st = status(url)
    assert st["jobs_kept"] == 0 and st["queued"] == 0   # the page downloaded the result: nothing kept


def test_web_e2e_two_tabs_and_a_closed_tab(browser_tools, server):
    url, _ = server
    before = status(url)
    out = scenario(browser_tools, "tabs", url, photo=PHOTO,
                   long={"octaves": 1, "steps": 150, "max_size": 224}, short={"octaves": 1, "steps": 2, "max_size": 96})
    assert out["queued_text"].startswith("Queued: 1 job")
    assert out["second_status"].startswith("Done in"), out
    print(out)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        st = status(url)
        if st["jobs_kept"] == 0 and not st["running"]:
            break
        time.sleep(0.2)
    assert st["cancelled"] == before["cancelled"] + 1       # the closed tab's job was cancelled
    assert st["done"] == before["done"] + 1
    assert st["jobs_kept"] == 0 and not st["running"]


def test_web_e2e_live_tab(browser_tools, server):
    url, _ = server
    shot = str(pathlib.Path(SHOTS) / "web_live.png") if SHOTS else None
    out = scenario(browser_tools, "live", url, screenshot=shot, measure_ms=4000)
    print(f"\nlive filter: {out['fps_measured']:.1f} frames/s at 320x240 on {out['backend']} "
          f"(cross-origin isolated: {out['isolated']})")
    assert out["backend"].startswith("wasm")                # headless Chromium here has no WebGPU adapter
    assert out["diff_full"] > 5.0                           # filtered frames differ from the camera's
    assert out["diff_zero"] < 0.5                           # strength 0 draws the camera's frame
    assert out["canvas_mean"] > 5.0
    assert float(out["fps_text"]) > 0 and out["fps_measured"] > 1.0
    assert out["snapshot_name"] == "fastdream-snapshot.png"


def test_web_e2e_live_dream_mode(browser_tools, server):
    """Dream mode: the fake camera's frames dreamed on the server and shown with fps and latency; a
    second page waits in line with its position shown, and streams when the first page closes."""
    url, _ = server
    shot = str(pathlib.Path(SHOTS) / "web_live_dream.png") if SHOTS else None
    out = scenario(browser_tools, "live-dream", url, screenshot=shot, measure_ms=4000, timeout=400)
    print(f"\nlive dream in the browser: {out['fps_measured']:.1f} frames/s, latency {out['latency_ms']:.0f} ms "
          f"at 320x240 ({out['backend_text']})")
    assert out["fps_measured"] > 0.5 and float(out["fps_text"]) > 0
    assert float(out["latency_text"]) > 0 and out["latency_ms"] > 0
    assert out["diff"] > 5.0                                # dreamed frames differ from the camera's
    assert "cpu" in out["backend_text"] or "cuda" in out["backend_text"]
    assert out["queued_text"].startswith("Queued: position 1") and out["second_frames_while_queued"] == 0
    assert out["second_error"] is None and out["second_frames"] >= 3, out
    st = status(url)
    assert st["live_served"] >= 1 and not st["live_active"] and st["live_waiting"] == 0


@pytest.mark.parametrize("case,want", [("live-denied", "permission was denied"), ("live-nocam", "No camera")])
def test_web_e2e_live_tab_without_camera(browser_tools, server, case, want):
    url, _ = server
    out = scenario(browser_tools, case, url)
    assert want in out["message"]


def test_web_e2e_live_tab_without_filter(browser_tools, tmp_path):
    cfg = ServerConfig(filter_path=str(tmp_path / "missing.onnx"))
    with running_server(cfg) as (url, _):
        out = scenario(browser_tools, "live-nocam", url)
    assert "No dream filter" in out["message"]
