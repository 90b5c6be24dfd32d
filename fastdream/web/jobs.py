"""Dream jobs for the web server: a bounded queue, one worker per device, cancel, time limit, expiry.

A job's life: ``queued`` -> ``running`` -> ``done`` | ``error`` | ``cancelled`` | ``expired``. The worker
thread runs one job at a time (the device is busy with one dream). A job holds its input picture as a
tensor in memory (the upload's bytes are written to a temporary file only for as long as Pillow reads it)
and its result as PNG bytes; both are dropped when the result is downloaded, when the job is cancelled or
fails, and ``ttl`` seconds after it ends if nobody downloads it. Nothing is written to disk for a job after
its upload is read.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import threading
import time
import uuid
from typing import Any

import torch

from fastdream.errors import FastdreamError

FINAL = ("done", "error", "cancelled", "expired")


class JobCancelled(Exception):
    """Raised inside the dream loop (from the progress callback) to stop a job."""


class QueueFull(FastdreamError):
    pass


@dataclasses.dataclass
class DreamRequest:
    """A validated dream request: everything the worker needs, no client-given paths; the objective as
    objects (``fastdream.engine.compose.Term``: a Layer or ClassLogit, its weight and region), never
    strings to parse."""

    picture: torch.Tensor                 # [1, 3, H, W] float32 in [0, 1]
    preset: str | None = None
    terms: list = dataclasses.field(default_factory=list)          # [Term], checked against the backbone
    guide: torch.Tensor | None = None     # [1, 3, h, w] guide picture
    guide_weight: float = 1.0
    guide_region: Any = None              # a Box (x0, y0, x1, y1 fractions) for the guide objective, or None
    guide_layers: list[str] = dataclasses.field(default_factory=lambda: ["block9"])
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)   # DreamConfig fields
    max_size: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)      # what the client asked, for the report


@dataclasses.dataclass
class Job:
    id: str
    request: DreamRequest | None
    created: float = dataclasses.field(default_factory=time.monotonic)
    status: str = "queued"
    message: str = ""
    done: int = 0
    total: int = 0
    previews: list[bytes] = dataclasses.field(default_factory=list)   # JPEG after each octave
    result: bytes | None = None           # PNG
    report: dict | None = None
    started: float | None = None
    ended: float | None = None
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    version: int = 0                      # bumped on every change (the event stream polls it)
    forget: bool = False                  # drop the job as soon as it ends (nobody is left to ask)


def _jpeg(x: torch.Tensor, max_side: int = 512) -> bytes:
    from fastdream.imageio import tensor_to_pil

    img = tensor_to_pil(x.detach().float().cpu())
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class JobQueue:
    """One worker thread dreaming jobs in order; at most ``max_queued`` jobs waiting.

    ``timeout``: seconds a job may run before it is stopped; ``ttl``: seconds a finished job's result is
    kept for download.
    """

    def __init__(self, device: torch.device, max_queued: int = 4, timeout: float = 600.0, ttl: float = 600.0,
                 backbone=None):
        self.device = device
        self.max_queued = max_queued
        self.timeout = timeout
        self.ttl = ttl
        self.backbone_spec = backbone
        self.jobs: dict[str, Job] = {}
        self.pending: collections.deque[str] = collections.deque()
        self.running: str | None = None
        self.lock = threading.Condition()
        self._stop = False
        self.counts = {"done": 0, "cancelled": 0, "error": 0, "expired": 0}
        self.worker = threading.Thread(target=self._work, name="fastdream-dream-worker", daemon=True)
        self.worker.start()

    # -- client side ------------------------------------------------------------------------------
    def submit(self, request: DreamRequest) -> Job:
        with self.lock:
            self._expire()
            if len(self.pending) >= self.max_queued:
                raise QueueFull(f"the queue is full ({self.max_queued} jobs waiting); try again in a moment")
            job = Job(id=uuid.uuid4().hex, request=request)
            self.jobs[job.id] = job
            self.pending.append(job.id)
            self._touch_pending()
            self.lock.notify_all()
            return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            self._expire()
            return self.jobs.get(job_id)

    def position(self, job: Job) -> int:
        """Jobs ahead of this one (the running job counts); 0 once it runs."""
        with self.lock:
            if job.status != "queued":
                return 0
            try:
                return self.pending.index(job.id) + (1 if self.running else 0)
            except ValueError:
                return 0

    def cancel(self, job_id: str, reason: str = "cancelled", forget: bool = False) -> bool:
        """Stop a job (a running one stops at its next step). ``forget``: drop its record too when it
        ends (the page that asked for it is gone)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return False
            job.forget = job.forget or forget
            if job.status == "queued":
                self.pending.remove(job.id)
                self._finish(job, "cancelled", reason)
                self._touch_pending()
            elif job.status == "running":
                job.cancel.set()
                job.message = reason
            elif job.status in FINAL:
                self._drop(job)  # nothing more to download
            return True

    def take_result(self, job_id: str) -> tuple[bytes, dict] | None:
        """The result PNG and report; the job is forgotten afterwards (the server keeps nothing)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.status != "done" or job.result is None:
                return None
            out = (job.result, job.report or {})
            self.jobs.pop(job_id, None)
            job.result = None
            job.previews = []
            return out

    def stats(self) -> dict:
        with self.lock:
            self._expire()
            return {"queued": len(self.pending), "running": self.running is not None, "jobs_kept": len(self.jobs),
                    "max_queued": self.max_queued, "timeout_s": self.timeout, "ttl_s": self.ttl,
                    **self.counts, "device": str(self.device)}

    def shutdown(self) -> None:
        with self.lock:
            self._stop = True
            for jid in list(self.jobs):
                self.cancel(jid, "the server is shutting down")
            self.lock.notify_all()

    # -- bookkeeping (call with the lock held) ---------------------------------------------------
    def _touch_pending(self):
        for jid in self.pending:  # queue positions changed
            self.jobs[jid].version += 1

    def _finish(self, job: Job, status: str, message: str = ""):
        self.counts[status] += 1
        job.status = status
        job.message = message
        job.ended = time.monotonic()
        job.request = None  # drop the input picture
        if status != "done":
            job.previews = []
            job.result = None
        job.version += 1
        if job.forget and status != "done":
            self.jobs.pop(job.id, None)
        self.lock.notify_all()

    def _drop(self, job: Job):
        self.jobs.pop(job.id, None)
        job.result = None
        job.previews = []
        job.request = None

    def _expire(self):
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.status in FINAL and job.ended is not None and now - job.ended > self.ttl:
                self._drop(job)
                if job.status == "done":
                    self.counts["expired"] += 1
                job.status = "expired"
                job.version += 1

    # -- worker ----------------------------------------------------------------------------------
    def _work(self):
        while True:
            with self.lock:
                while not self.pending and not self._stop:
                    self.lock.wait(timeout=5.0)
                    self._expire()
                if self._stop:
                    return
                job = self.jobs[self.pending.popleft()]
                self.running = job.id
                job.status = "running"
                job.started = time.monotonic()
                job.version += 1
                self._touch_pending()
            try:
                result, report = self._dream(job)
                with self.lock:
                    job.result = result
                    job.report = report
                    self._finish(job, "done")
            except JobCancelled as e:
                with self.lock:
                    self._finish(job, "cancelled", str(e) or job.message or "cancelled")
            except FastdreamError as e:
                with self.lock:
                    self._finish(job, "error", str(e))
            except Exception as e:  # a bug: report it to the page, keep the server alive
                with self.lock:
                    self._finish(job, "error", f"internal error: {type(e).__name__}: {e}")
            finally:
                with self.lock:
                    self.running = None
                    self._touch_pending()

    def _dream(self, job: Job) -> tuple[bytes, dict]:
        """The same work as ``fastdream dream`` (cli/dream.py: dream_one), with progress and previews."""
        from fastdream.backbones import get_backbone
        from fastdream.engine.compose import dream_objective, guide_features_objective
        from fastdream.engine.dream import Dreamer, dream_tensor
        from fastdream.engine.objectives import ClassLogit
        from fastdream.objective_text import class_backbone_names, load_class_backbones
        from fastdream.presets import make_config, preset_objective
        from fastdream.report import dream_report

        req = job.request
        assert req is not None
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout

        def check():
            if job.cancel.is_set():
                raise JobCancelled(job.message or "cancelled")
            if time.monotonic() > deadline:
                raise JobCancelled(f"the job ran past its time limit ({self.timeout:g} s) and was stopped")

        def progress(done, total):
            check()
            with self.lock:
                job.done, job.total = done, total
                job.version += 1

        def on_octave(i, picture):
            jpg = _jpeg(picture)
            with self.lock:
                job.previews.append(jpg)
                job.version += 1

        x = req.picture.to(self.device)
        H, W = x.shape[-2:]
        cfg, _ = make_config(req.preset, **req.overrides)
        backbone = get_backbone(self.backbone_spec, self.device)
        check()
        boxed = any(t.region is not None and isinstance(t.objective, ClassLogit) for t in req.terms)
        names = class_backbone_names(None, self.backbone_spec) if boxed else []
        objective = dream_objective(req.terms, class_backbones=load_class_backbones(names, self.device))
        if req.guide is not None:
            g = guide_features_objective(backbone, req.guide.to(self.device), req.guide_layers, "dot", req.guide_weight,
                                         req.guide_region)
            objective = g if objective is None else objective + g
        objective = preset_objective(req.preset, objective, backbone, (H, W))
        evaluator = Dreamer(backbone, objective, cfg)
        before = evaluator.evaluate(x)
        check()
        t1 = time.perf_counter()
        result, stats = dream_tensor(x, objective, backbone, cfg, max_size=req.max_size, progress=progress,
                                     on_octave=on_octave)
        dream_seconds = time.perf_counter() - t1
        after = evaluator.evaluate(result)
        from fastdream.imageio import tensor_to_pil

        from fastdream.presets import DEFAULT_PRESET

        params = {"preset": req.preset or DEFAULT_PRESET, "objective": repr(objective), **dataclasses.asdict(cfg),
                  "max_size": req.max_size, "backbone": self.backbone_spec or "efficientnet-lite0",
                  "box_step": evaluator.box_step}  # the step that ran ("auto" resolved)
        if boxed:
            params["class_backbones"] = names
        buf = io.BytesIO()
        from PIL import PngImagePlugin
        import json

        info = PngImagePlugin.PngInfo()
        info.add_text("fastdream", json.dumps(params, sort_keys=True, default=str))
        tensor_to_pil(result.cpu()).save(buf, format="PNG", pnginfo=info)
        report = dream_report((W, H), result, self.device, time.perf_counter() - t0, dream_seconds, before, after,
                              stats, params, queued_seconds=round((job.started or job.created) - job.created, 3))
        report["request"] = req.params
        return buf.getvalue(), report
