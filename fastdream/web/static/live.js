// The Live tab, two modes. Filter: the webcam through the ONNX dream filter, run in the browser by ONNX
// Runtime Web (WebGPU where the browser has it, WebAssembly otherwise); nothing leaves the browser.
// Dream: webcam frames (JPEG) over a WebSocket to `fastdream serve`, which dreams them live (the dream
// carried from frame to frame along the optical flow) and sends them back; one frame in flight at a
// time, so the page always sends the newest camera frame. One live stream per server; others queue.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const W = 320, H = 240;                 // the camera is asked for this size; frames are drawn at it
  const VENDOR = "/static/vendor/onnxruntime-web/";
  const live = (window.fastdreamLive = { frames: 0, fps: 0, backend: null, diff: null, running: false, error: null,
    mode: "filter", latency: null, queued: null, status: "" });
  let started = false, stream = null, session = null, info = null, loopId = 0, socket = null, presets = null;

  function status(t) { $("live-status").textContent = t; live.status = t; }
  function fail(t) {
    live.error = t;
    $("live-error").textContent = t;
    $("live-error").hidden = false;
    status(live.mode === "dream" ? "The live dream is not running." : "The live filter is not running.");
  }
  function clearError() { live.error = null; $("live-error").hidden = true; }

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
    clearError();
    const my = ++loopId;
    if (live.mode === "dream") return startDream(my);
    try {
      status("Loading the filter…");
      if (!session) { // loaded once; switching tabs only stops and restarts the camera
        info = (await (await fetch("/api/options")).json()).filter;
        if (!info.available) { fail(info.message); return; }
        if (!window.ort) await loadScript(VENDOR + "ort.webgpu.min.js");
        session = await createSession();
      }
      if (my !== loopId) return;  // stopped or switched to dream mode while the filter loaded: leave its label
      $("backend").textContent = live.backend;
      status("Asking for the camera…");
      const cam = await camera();
      if (my !== loopId) { for (const t of cam.getTracks()) t.stop(); return; }
      stream = cam;
      const video = $("camera");
      video.srcObject = stream;
      await video.play();
      if (my !== loopId) return;
      status("Running: " + info.name + " on " + live.backend + ".");
      $("snapshot").disabled = false;
      live.running = true;
      run();
    } catch (e) {
      if (my === loopId) fail(e.message || String(e));  // not an error of a start that was stopped since
    }
  }

  function stop() {
    live.running = false;
    loopId++;
    if (socket) { const s = socket; socket = null; s.close(); }
    if (stream) { for (const t of stream.getTracks()) t.stop(); stream = null; }
    started = false;
  }

  function tick(times) { // frames per second over the last two seconds
    const now = performance.now();
    times.push(now);
    while (times.length && now - times[0] > 2000) times.shift();
    if (times.length > 1) {
      live.fps = (times.length - 1) / ((now - times[0]) / 1000);
      $("fps").textContent = live.fps.toFixed(1);
    }
  }

  async function loadPresets() {
    if (presets) return;
    const opts = await (await fetch("/api/options")).json();
    presets = opts.presets;
    const sel = $("live-preset");
    for (const p of presets) {
      const o = document.createElement("option");
      o.value = p.name; o.textContent = p.name; o.title = p.description;
      if (p.name === opts.default_preset) o.selected = true;
      sel.appendChild(o);
    }
  }

  // Dream mode: the camera's newest frame goes to the server when the last dream came back.
  async function startDream(id) {
    try {
      await loadPresets();
      status("Asking for the camera…");
      const cam = await camera();
      if (id !== loopId) { for (const t of cam.getTracks()) t.stop(); return; }
      stream = cam;
      const video = $("camera");
      video.srcObject = stream;
      await video.play();
      if (id !== loopId) return;
      $("backend").textContent = "the server (fastdream serve)";
      const grab = document.createElement("canvas");
      grab.width = W; grab.height = H;
      const gctx = grab.getContext("2d", { willReadFrequently: true });
      const out = $("live-canvas").getContext("2d", { willReadFrequently: true });
      const times = [], lat = [];
      let sentAt = 0, sent = null;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = (socket = new WebSocket(proto + "//" + location.host + "/api/live"));
      ws.binaryType = "arraybuffer";
      status("Connecting to the server…");
      const send = () => {
        if (id !== loopId || ws.readyState !== WebSocket.OPEN) return;
        gctx.drawImage(video, 0, 0, W, H);
        sent = gctx.getImageData(0, 0, W, H).data;
        grab.toBlob(async (blob) => {
          const buf = await blob.arrayBuffer();
          if (id !== loopId || ws.readyState !== WebSocket.OPEN) return;
          sentAt = performance.now();
          ws.send(buf);
        }, "image/jpeg", 0.85);
      };
      ws.onopen = () => ws.send(JSON.stringify({ preset: $("live-preset").value || null,
        steps_per_frame: Math.max(1, Math.min(8, parseInt($("live-steps").value, 10) || 1)) }));
      ws.onmessage = async (ev) => {
        if (id !== loopId) return;
        if (typeof ev.data === "string") {
          const m = JSON.parse(ev.data);
          if (m.type === "queued") {
            live.queued = m.position;
            status(`Queued: position ${m.position} — another page is dreaming live on this server; yours starts when it stops.`);
          } else if (m.type === "ready") {
            live.queued = 0;
            live.running = true;
            $("backend").textContent = `the server: ${m.device}, ${m.precision}, ${m.steps_per_frame} step(s) per frame`;
            status("Dreaming live on the server.");
            $("snapshot").disabled = false;
            send();
          } else if (m.type === "error") {
            fail(m.message);
          }
          return;
        }
        const ms = performance.now() - sentAt;
        const bmp = await createImageBitmap(new Blob([ev.data], { type: "image/jpeg" }));
        out.drawImage(bmp, 0, 0, W, H);
        bmp.close();
        const q = out.getImageData(0, 0, W, H).data;
        let diff = 0;
        for (let i = 0; i < q.length; i += 4) diff += Math.abs(q[i] - sent[i]) + Math.abs(q[i + 1] - sent[i + 1]) + Math.abs(q[i + 2] - sent[i + 2]);
        live.diff = diff / (W * H * 3);
        live.frames++;
        lat.push(ms);
        if (lat.length > 30) lat.shift();
        live.latency = lat.reduce((a, b) => a + b, 0) / lat.length;
        $("latency").textContent = live.latency.toFixed(0);
        tick(times);
        send();
      };
      ws.onclose = () => {
        if (id === loopId && !live.error) fail("The connection to the server closed; reload the page to dream again.");
        live.running = false;
      };
    } catch (e) {
      if (id === loopId) fail(e.message || String(e));
    }
  }

  function setMode(m) {
    stop();
    live.mode = m;
    live.frames = 0; live.fps = 0; live.latency = null; live.queued = null; live.diff = null;
    $("fps").textContent = "–"; $("latency").textContent = "–";
    $("filter-controls").hidden = m !== "filter";
    $("dream-controls").hidden = m !== "dream";
    $("latency-row").hidden = m !== "dream";
    $("snapshot").disabled = true;
    if (!$("panel-live").hidden) start();
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
      tick(times);
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
  for (const r of document.querySelectorAll("input[name=live-mode]")) r.addEventListener("change", () => { if (r.checked) setMode(r.value); });
  document.addEventListener("fastdream:tab", (e) => { if (e.detail === "live") start(); else stop(); });
  if (!$("panel-live").hidden) start();
})();
