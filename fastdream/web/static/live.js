// The Live tab: the webcam through the ONNX dream filter, run in the browser by ONNX Runtime Web
// (WebGPU where the browser has it, WebAssembly otherwise). Nothing leaves the browser.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const W = 320, H = 240;                 // the camera is asked for this size; frames are drawn at it
  const VENDOR = "/static/vendor/onnxruntime-web/";
  const live = (window.fastdreamLive = { frames: 0, fps: 0, backend: null, diff: null, running: false, error: null });
  let started = false, stream = null, session = null, info = null, loopId = 0;

  function status(t) { $("live-status").textContent = t; }
  function fail(t) {
    live.error = t;
    $("live-error").textContent = t;
    $("live-error").hidden = false;
    status("The live filter is not running.");
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(s);
    });
  }

  async function camera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This browser gives no camera access to this page (a camera needs https or localhost).");
    }
    try {
      return await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: W }, height: { ideal: H } }, audio: false });
    } catch (e) {
      if (e.name === "NotAllowedError" || e.name === "SecurityError")
        throw new Error("Camera permission was denied. Allow the camera for this page in the browser's site settings, then reload.");
      if (e.name === "NotFoundError" || e.name === "OverconstrainedError")
        throw new Error("No camera was found. Connect a camera and reload the page.");
      if (e.name === "NotReadableError")
        throw new Error("The camera is in use by another program.");
      throw new Error("The camera cannot be opened: " + e.name + (e.message ? " (" + e.message + ")" : ""));
    }
  }

  async function createSession() {
    const ort = window.ort;
    ort.env.wasm.wasmPaths = VENDOR;
    // Threads need cross-origin isolation (the server sends COOP/COEP headers).
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    const model = await (await fetch(info.url)).arrayBuffer();
    const tries = [];
    if (navigator.gpu && !new URLSearchParams(location.search).has("wasm")) {
      try { if (await navigator.gpu.requestAdapter()) tries.push("webgpu"); } catch (e) { /* no adapter */ }
    }
    tries.push("wasm");
    let lastErr = null;
    for (const ep of tries) {
      try {
        const s = await ort.InferenceSession.create(model, { executionProviders: [ep], graphOptimizationLevel: "all" });
        live.backend = ep + (ep === "wasm" ? ` (${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads > 1 ? "s" : ""})` : "");
        return s;
      } catch (e) { lastErr = e; }
    }
    throw new Error("ONNX Runtime cannot load the filter: " + (lastErr && lastErr.message));
  }

  async function start() {
    if (started) return;
    started = true;
    try {
      status("Loading the filter…");
      if (!session) { // loaded once; switching tabs only stops and restarts the camera
        info = (await (await fetch("/api/options")).json()).filter;
        if (!info.available) { fail(info.message); return; }
        if (!window.ort) await loadScript(VENDOR + "ort.webgpu.min.js");
        session = await createSession();
      }
      $("backend").textContent = live.backend;
      status("Asking for the camera…");
      stream = await camera();
      const video = $("camera");
      video.srcObject = stream;
      await video.play();
      status("Running: " + info.name + " on " + live.backend + ".");
      $("snapshot").disabled = false;
      live.running = true;
      run();
    } catch (e) {
      fail(e.message || String(e));
    }
  }

  function stop() {
    live.running = false;
    loopId++;
    if (stream) { for (const t of stream.getTracks()) t.stop(); stream = null; }
    started = false;
  }

  // One frame: camera -> [1, 3, h, w] float (padded to the filter's size multiple) -> filter -> blend -> canvas.
  async function run() {
    const ort = window.ort;
    const id = ++loopId;
    const mult = Math.max(1, info.pad_multiple || 1);
    const ph = Math.ceil(H / mult) * mult, pw = Math.ceil(W / mult) * mult;
    const grab = document.createElement("canvas");
    grab.width = W; grab.height = H;
    const gctx = grab.getContext("2d", { willReadFrequently: true });
    const out = $("live-canvas").getContext("2d");
    const input = new Float32Array(3 * ph * pw);
    const plane = ph * pw;
    const inName = session.inputNames[0], outName = session.outputNames[0];
    const times = [];
    const video = $("camera");
    while (id === loopId) {
      gctx.drawImage(video, 0, 0, W, H);
      const frame = gctx.getImageData(0, 0, W, H);
      const px = frame.data;
      // HWC uint8 -> CHW float in [0, 1]; edge-replicate into the padding
      for (let y = 0; y < ph; y++) {
        const sy = Math.min(y, H - 1);
        for (let x = 0; x < pw; x++) {
          const s = (sy * W + Math.min(x, W - 1)) * 4, d = y * pw + x;
          input[d] = px[s] / 255; input[plane + d] = px[s + 1] / 255; input[2 * plane + d] = px[s + 2] / 255;
        }
      }
      const result = await session.run({ [inName]: new ort.Tensor("float32", input, [1, 3, ph, pw]) });
      const o = result[outName].data;
      const k = parseFloat($("strength").value);
      const outFrame = new ImageData(W, H);
      const q = outFrame.data;
      let diff = 0;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const s = (y * W + x) * 4, d = y * pw + x;
          for (let c = 0; c < 3; c++) {
            const a = px[s + c], b = o[c * plane + d] * 255;
            const v = Math.round(a + k * (b - a));
            q[s + c] = v < 0 ? 0 : v > 255 ? 255 : v;
            diff += Math.abs(q[s + c] - a);
          }
          q[s + 3] = 255;
        }
      }
      out.putImageData(outFrame, 0, 0);
      live.diff = diff / (W * H * 3); // mean |filtered - camera| in 0..255, for tests and curiosity
      live.frames++;
      const now = performance.now();
      times.push(now);
      while (times.length && now - times[0] > 2000) times.shift();
      if (times.length > 1) {
        live.fps = (times.length - 1) / ((now - times[0]) / 1000);
        $("fps").textContent = live.fps.toFixed(1);
      }
      await new Promise((r) => requestAnimationFrame(r));
    }
  }

  $("strength").addEventListener("input", () => { $("strength-value").textContent = parseFloat($("strength").value).toFixed(2); });
  $("snapshot").addEventListener("click", () => {
    $("live-canvas").toBlob((blob) => {
      const a = $("snapshot-link");
      if (a.href) URL.revokeObjectURL(a.href);
      a.href = URL.createObjectURL(blob);
      a.hidden = false;
      a.click();
    }, "image/png");
  });
  document.addEventListener("fastdream:tab", (e) => { if (e.detail === "live") start(); else stop(); });
  if (!$("panel-live").hidden) start();
})();
