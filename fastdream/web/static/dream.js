// The Dream tab: upload a photo, choose settings, draw a region, follow the job live (server-sent events).
"use strict";

const $ = (id) => document.getElementById(id);

// -- tabs -------------------------------------------------------------------------------------------
function showTab(name) {
  for (const b of document.querySelectorAll("nav button")) {
    const on = b.dataset.panel === name;
    b.setAttribute("aria-selected", on ? "true" : "false");
    $("panel-" + b.dataset.panel).hidden = !on;
  }
  document.dispatchEvent(new CustomEvent("fastdream:tab", { detail: name }));
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
}
for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => showTab(b.dataset.panel));

// -- options ----------------------------------------------------------------------------------------
let OPTIONS = null;
const optionsReady = fetch("/api/options").then((r) => r.json()).then((o) => {
  OPTIONS = o;
  $("device").textContent = "dreams run on " + o.device;
  const preset = $("preset");
  for (const p of o.presets) {
    const opt = new Option(p.name, p.name, p.name === o.default_preset, p.name === o.default_preset);
    opt.title = p.description;
    preset.add(opt);
  }
  const showPreset = () => {
    const p = o.presets.find((q) => q.name === preset.value);
    $("preset-desc").textContent = p ? p.description : "";
  };
  preset.addEventListener("change", showPreset);
  showPreset();
  for (const l of o.layers) $("layer").add(new Option(l, l));
  const dl = $("classes");
  for (const c of o.classes) { const opt = document.createElement("option"); opt.value = c; dl.appendChild(opt); }
  $("steps").max = o.limits.max_steps;
  $("max_size").max = o.limits.max_side;
  return o;
});

// -- the photo and the region box --------------------------------------------------------------------
let photoFile = null;
let region = null; // [x0, y0, x1, y1] as fractions of the picture

function setPhoto(file) {
  hideError();
  if (!file) return;
  if (OPTIONS && file.size > OPTIONS.limits.max_upload_mb * 1e6) {
    showError(`This file is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${OPTIONS.limits.max_upload_mb} MB.`);
    return;
  }
  photoFile = file;
  const url = URL.createObjectURL(file);
  $("photo").onload = () => {
    $("stage").hidden = false; $("region-hint").hidden = false; $("drop").dataset.preview = "yes";
  };
  $("photo").onerror = () => { // e.g. TIFF, or not a picture at all: the server checks it on upload
    $("stage").hidden = true; $("region-hint").hidden = true; $("drop").dataset.preview = "no";
    $("drop-hint").hidden = false;
    $("drop-hint").textContent = `${file.name}: the browser cannot preview this file; the server checks it when you press Dream.`;
  };
  delete $("drop").dataset.preview;
  $("photo").src = url;
  $("drop-hint").hidden = true;
  clearRegion();
  $("start").disabled = false;
  setStatus("Ready: press Dream.");
}

$("file").addEventListener("change", (e) => setPhoto(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) setPhoto(e.dataTransfer.files[0]);
});

function clearRegion() { region = null; $("box").hidden = true; $("region-text").textContent = ""; }
$("clear-region").addEventListener("click", clearRegion);

(function regionDrag() {
  const stage = $("stage"), box = $("box");
  let start = null;
  const frac = (e) => {
    const r = $("photo").getBoundingClientRect();
    return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
  };
  const draw = (a, b) => {
    const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
    const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
    Object.assign(box.style, { left: x0 * 100 + "%", top: y0 * 100 + "%", width: (x1 - x0) * 100 + "%", height: (y1 - y0) * 100 + "%" });
    box.hidden = false;
    return [x0, y0, x1, y1];
  };
  stage.addEventListener("pointerdown", (e) => { e.preventDefault(); start = frac(e); stage.setPointerCapture(e.pointerId); });
  stage.addEventListener("pointermove", (e) => { if (start) draw(start, frac(e)); });
  stage.addEventListener("pointerup", (e) => {
    if (!start) return;
    const b = draw(start, frac(e));
    start = null;
    if (b[2] - b[0] < 0.02 || b[3] - b[1] < 0.02) { clearRegion(); return; }
    region = b;
    $("region-text").textContent = "box " + b.map((v) => v.toFixed(2)).join(", ");
  });
})();

// -- the job ----------------------------------------------------------------------------------------
let job = null;       // {id, source: EventSource}
function setStatus(t) { $("dream-status").textContent = t; }
function showError(t) { $("dream-error").textContent = t; $("dream-error").hidden = false; }
function hideError() { $("dream-error").hidden = true; }
function busy(on) { $("start").disabled = on || !photoFile; $("cancel").hidden = !on; }

$("dream-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!photoFile || job) return;
  hideError();
  await optionsReady;
  const fd = new FormData();
  fd.append("image", photoFile, "upload");
  for (const k of ["preset", "layer", "class", "octaves", "steps", "jitter", "max_size", "seed"]) {
    const v = $(k).value.trim();
    if (v !== "") fd.append(k, v);
  }
  const guide = $("guide").files[0];
  if (guide) fd.append("guide", guide, "guide");
  if (region) fd.append("region", region.map((v) => v.toFixed(4)).join(","));
  $("result").hidden = true;
  $("downloads").hidden = true;
  $("progress").hidden = false;
  $("progress").value = 0;
  busy(true);
  setStatus("Uploading…");
  let r, body;
  try {
    r = await fetch("/api/jobs", { method: "POST", body: fd });
    body = await r.json();
  } catch (err) {
    body = { error: "the server cannot be reached (" + err + ")" };
  }
  if (!r || !r.ok) {
    busy(false);
    $("progress").hidden = true;
    setStatus("Not started.");
    showError(body.error || "the server refused the job");
    return;
  }
  follow(body.id, body.position);
});

function follow(id, position) {
  const source = new EventSource(`/api/jobs/${id}/events`);
  job = { id, source };
  setStatus(position > 0 ? `Queued: ${position} job(s) ahead.` : "Starting…");
  source.addEventListener("state", (ev) => {
    const s = JSON.parse(ev.data);
    if (s.status === "queued") setStatus(`Queued: ${s.position} job(s) ahead.`);
    else if (s.status === "running") {
      if (s.total > 0) {
        $("progress").max = s.total;
        $("progress").value = s.done;
        setStatus(`Dreaming: step ${s.done} of ${s.total}` + (s.octaves ? `, octave ${s.octaves} done` : "") + ".");
      } else setStatus("Dreaming…");
    } else if (s.status === "cancelled" || s.status === "error" || s.status === "expired") {
      end();
      setStatus(s.status === "cancelled" ? "Cancelled." : "Stopped.");
      if (s.status !== "cancelled" || s.message !== "cancelled by the user") showError(s.message || s.status);
    }
  });
  source.addEventListener("octave", (ev) => {
    const o = JSON.parse(ev.data);
    $("result").src = o.image;
    $("result").hidden = false;
    $("result").dataset.octave = String(o.index);
  });
  source.addEventListener("done", async (ev) => {
    const d = JSON.parse(ev.data);
    end();
    $("progress").value = $("progress").max;
    try {
      const r = await fetch(d.result);
      if (!r.ok) throw new Error((await r.json()).error);
      const url = URL.createObjectURL(await r.blob());
      $("result").src = url;
      $("result").hidden = false;
      $("result").dataset.final = "1";
      $("download-result").href = url;
      const rep = new Blob([JSON.stringify(d.report, null, 2)], { type: "application/json" });
      $("download-report").href = URL.createObjectURL(rep);
      $("downloads").hidden = false;
      setStatus(`Done in ${d.report.seconds.toFixed(1)} s (dream ${d.report.dream_seconds.toFixed(1)} s, ` +
        `objective ×${(d.report.objective_gain || 0).toFixed(2)}).`);
    } catch (err) {
      showError("the result could not be fetched: " + err.message);
    }
  });
  source.onerror = () => {
    if (job && job.source === source && source.readyState === EventSource.CLOSED) {
      end();
      showError("the connection to the server was lost");
    }
  };
}

function end() {
  if (job) job.source.close();
  job = null;
  busy(false);
}

$("cancel").addEventListener("click", async () => {
  if (!job) return;
  const id = job.id;
  setStatus("Cancelling…");
  await fetch(`/api/jobs/${id}/cancel`, { method: "POST" });
});

// A closed tab cancels its job: the event stream closes (the server notices), and a beacon says so at once.
window.addEventListener("pagehide", () => { if (job) navigator.sendBeacon(`/api/jobs/${job.id}/cancel?gone=1`); });

if (location.hash === "#live") showTab("live");
