// Browser scenarios for tests/test_web_e2e.py: node e2e.mjs SCENARIO BASE_URL [OPTIONS_JSON]
// Prints one JSON line with what it saw; exits 1 with {"error": ...} when a step fails.
import { chromium } from "playwright-core";

const [scenario, base, optsJson] = process.argv.slice(2);
const opts = JSON.parse(optsJson || "{}");
const EXE = process.env.CHROMIUM || "/usr/bin/chromium";
// Flags for a closed network and a root user: no sandbox, no background traffic.
const QUIET = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];
const FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"];

async function launch(extra = []) {
  return chromium.launch({ executablePath: EXE, headless: true, args: [...QUIET, ...extra], timeout: 60000 });
}

async function newPage(browser, viewport = { width: 1100, height: 780 }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.type() + ": " + m.text()));
  page.on("pageerror", (e) => logs.push("pageerror: " + e.message));
  return { context, page, logs };
}

// Start a dream from the page with the given settings; returns when the job is accepted or refused.
async function startDream(page, file, settings, regionDrag = false) {
  await page.goto(base + "/");
  await page.waitForFunction(() => document.querySelector("#preset").options.length > 0);
  await page.setInputFiles("#file", file);
  await page.waitForSelector("#drop[data-preview]");
  for (const [k, v] of Object.entries(settings)) await page.fill("#" + k, String(v));
  if (regionDrag) {
    const b = await page.locator("#photo").boundingBox();
    await page.mouse.move(b.x + b.width * 0.2, b.y + b.height * 0.25);
    await page.mouse.down();
    await page.mouse.move(b.x + b.width * 0.5, b.y + b.height * 0.5, { steps: 4 });
    await page.mouse.move(b.x + b.width * 0.8, b.y + b.height * 0.75, { steps: 4 });
    await page.mouse.up();
  }
  await page.click("#start");
}

async function run() {
  const out = {};
  if (scenario === "dream") {
    const browser = await launch();
    const { page, logs } = await newPage(browser);
    // a file that is not a picture: a clear message in the page
    await startDream(page, { name: "notes.jpg", mimeType: "image/jpeg", buffer: Buffer.from("not a picture at all") }, {});
    await page.waitForSelector("#dream-error:not([hidden])", { timeout: 20000 });
    out.bad_upload_message = await page.textContent("#dream-error");
    // a tiny dream with a region dragged on the photo
    const statuses = [];
    await page.exposeFunction("__status", (t) => statuses.push(t));
    const t0 = Date.now();
    await startDream(page, opts.photo, opts.settings, true);
    await page.evaluate(() => {
      new MutationObserver(() => window.__status(document.querySelector("#dream-status").textContent))
        .observe(document.querySelector("#dream-status"), { childList: true, characterData: true, subtree: true });
    });
    out.region_text = await page.textContent("#region-text");
    await page.waitForSelector("#result[data-octave]", { timeout: 120000 });
    out.saw_octave_preview = true;
    await page.waitForSelector("#result[data-final='1']", { timeout: 120000 });
    out.page_seconds = (Date.now() - t0) / 1000;
    out.statuses = statuses;
    out.final_status = await page.textContent("#dream-status");
    out.result_size = await page.evaluate(() => [document.querySelector("#result").naturalWidth, document.querySelector("#result").naturalHeight]);
    out.downloads_visible = await page.isVisible("#download-result");
    const dl = page.waitForEvent("download");
    await page.click("#download-report");
    const report = await dl;
    out.report_name = report.suggestedFilename();
    if (opts.screenshot) { await page.evaluate(() => window.scrollTo(0, 0)); await page.screenshot({ path: opts.screenshot }); }
    out.logs = logs;
    await browser.close();
  } else if (scenario === "tabs") {
    // two tabs at once: the second waits in the queue; closing the first cancels its job
    const browser = await launch();
    const a = await newPage(browser), b = await newPage(browser);
    const t0 = Date.now();
    await startDream(a.page, opts.photo, opts.long);
    await a.page.waitForFunction(() => /Dreaming/.test(document.querySelector("#dream-status").textContent), null, { timeout: 60000 });
    await startDream(b.page, opts.photo, opts.short);
    await b.page.waitForFunction(() => /Queued: 1 job/.test(document.querySelector("#dream-status").textContent), null, { timeout: 30000 });
    out.queued_text = await b.page.textContent("#dream-status");
    out.t_queued = (Date.now() - t0) / 1000;
    await a.page.close();
    out.closed_first = true;
    await b.page.waitForSelector("#result[data-final='1']", { timeout: 120000 });
    out.second_status = await b.page.textContent("#dream-status");
    out.t_done = (Date.now() - t0) / 1000;
    await browser.close();
  } else if (scenario === "live") {
    const browser = await launch(FAKE_CAMERA);
    const { page, logs } = await newPage(browser);
    await page.goto(base + "/#live");
    try {
      await page.waitForFunction(() => window.fastdreamLive && (window.fastdreamLive.frames >= 5 || window.fastdreamLive.error), null, { timeout: 90000 });
    } catch (e) { out.logs = logs; out.live = await page.evaluate(() => window.fastdreamLive); throw new Error("no frames: " + JSON.stringify(out)); }
    const err = await page.evaluate(() => window.fastdreamLive.error);
    if (err) throw new Error("live error: " + err + " " + logs.join(" | "));
    out.backend = await page.evaluate(() => window.fastdreamLive.backend);
    out.isolated = await page.evaluate(() => self.crossOriginIsolated);
    out.diff_full = await page.evaluate(() => window.fastdreamLive.diff);
    // frames per second over a measured window
    const f0 = await page.evaluate(() => [window.fastdreamLive.frames, performance.now()]);
    await page.waitForTimeout(opts.measure_ms || 4000);
    const f1 = await page.evaluate(() => [window.fastdreamLive.frames, performance.now()]);
    out.fps_measured = (f1[0] - f0[0]) / ((f1[1] - f0[1]) / 1000);
    out.fps_text = await page.textContent("#fps");
    if (opts.screenshot) await page.screenshot({ path: opts.screenshot });
    // strength 0: the drawn frame is the camera's
    await page.fill("#strength", "0");
    await page.dispatchEvent("#strength", "input");
    const n = await page.evaluate(() => window.fastdreamLive.frames);
    await page.waitForFunction((n) => window.fastdreamLive.frames >= n + 3, n, { timeout: 30000 });
    out.diff_zero = await page.evaluate(() => window.fastdreamLive.diff);
    // the canvas really shows something that is not black
    out.canvas_mean = await page.evaluate(() => {
      const c = document.querySelector("#live-canvas");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
      return s / (d.length / 4) / 3;
    });
    const dl = page.waitForEvent("download");
    await page.click("#snapshot");
    out.snapshot_name = (await dl).suggestedFilename();
    await browser.close();
  } else if (scenario === "live-dream") {
    // dream mode: webcam frames to the server over a WebSocket; a second page waits in line
    const browser = await launch(FAKE_CAMERA);
    const a = await newPage(browser);
    await a.page.goto(base + "/#live");
    await a.page.check("#mode-dream");
    try {
      await a.page.waitForFunction(() => window.fastdreamLive.mode === "dream" && (window.fastdreamLive.frames >= 4 || window.fastdreamLive.error), null, { timeout: 120000 });
    } catch (e) { throw new Error("no dreamed frames: " + JSON.stringify(await a.page.evaluate(() => window.fastdreamLive)) + " " + a.logs.join(" | ")); }
    const err = await a.page.evaluate(() => window.fastdreamLive.error);
    if (err) throw new Error("live dream error: " + err + " " + a.logs.join(" | "));
    const f0 = await a.page.evaluate(() => [window.fastdreamLive.frames, performance.now()]);
    await a.page.waitForTimeout(opts.measure_ms || 4000);
    const f1 = await a.page.evaluate(() => [window.fastdreamLive.frames, performance.now()]);
    out.fps_measured = (f1[0] - f0[0]) / ((f1[1] - f0[1]) / 1000);
    out.fps_text = await a.page.textContent("#fps");
    out.latency_text = await a.page.textContent("#latency");
    out.latency_ms = await a.page.evaluate(() => window.fastdreamLive.latency);
    out.diff = await a.page.evaluate(() => window.fastdreamLive.diff);
    out.backend_text = await a.page.textContent("#backend");
    if (opts.screenshot) await a.page.screenshot({ path: opts.screenshot });
    const b = await newPage(browser);
    await b.page.goto(base + "/#live");
    await b.page.check("#mode-dream");
    await b.page.waitForFunction(() => /Queued: position 1/.test(document.querySelector("#live-status").textContent), null, { timeout: 60000 });
    out.queued_text = await b.page.textContent("#live-status");
    out.second_frames_while_queued = await b.page.evaluate(() => window.fastdreamLive.frames);
    await a.page.close();
    await b.page.waitForFunction(() => window.fastdreamLive.frames >= 3 || window.fastdreamLive.error, null, { timeout: 120000 });
    out.second_error = await b.page.evaluate(() => window.fastdreamLive.error);
    out.second_status = await b.page.textContent("#live-status");
    out.second_frames = await b.page.evaluate(() => window.fastdreamLive.frames);
    await browser.close();
  } else if (scenario === "live-denied" || scenario === "live-nocam") {
    // denied: a fake camera exists but the permission prompt is refused; nocam: no camera at all
    const args = scenario === "live-denied" ? ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
      : ["--use-fake-ui-for-media-stream"];
    const browser = await launch(args);
    const { page, logs } = await newPage(browser);
    await page.goto(base + "/#live");
    await page.waitForSelector("#live-error:not([hidden])", { timeout: 60000 });
    out.message = await page.textContent("#live-error");
    out.logs = logs;
    await browser.close();
  } else if (scenario === "screenshot-dream") {
    const browser = await launch();
    const { page } = await newPage(browser);
    await page.goto(base + "/");
    await page.screenshot({ path: opts.screenshot });
    await browser.close();
  } else {
    throw new Error("unknown scenario " + scenario);
  }
  return out;
}

run().then((out) => { console.log(JSON.stringify(out)); process.exit(0); },
  (e) => { console.log(JSON.stringify({ error: String(e && e.stack || e) })); process.exit(1); });
