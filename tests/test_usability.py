"""What a new user meets first: output file modes, presets with objective flags, --help with defaults,
errors in one line, folder batches, progress in a log. Outputs are checked for content, errors for their
message, exit code 2, one line on stderr and no output left behind."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

EXAMPLE = REPO / "examples" / "chelsea.jpg"
FAST = ["--octaves", "1", "--steps", "2"]


def fd(*args, cwd=None, env=None, umask=None, timeout=600):
    """The CLI in a fresh process, as a user runs it (``umask``: the shell's umask)."""
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "fastdream.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env, preexec_fn=pre)


def run_main(args, capsys):
    """The CLI in this process (fast); returns (exit code, stderr)."""
    from fastdream.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def one_line_error(rc, err, msg):
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and msg in lines[0], err
    assert "Traceback" not in err and "\x1b" not in err


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    p = tmp_path_factory.mktemp("in") / "small.jpg"
    Image.open(EXAMPLE).resize((96, 64), Image.Resampling.LANCZOS).save(p, quality=95)
    return p


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


# -- 1. output modes ------------------------------------------------------------------------------------
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_output_modes_follow_the_umask_for_every_writer(tmp_path, umask_027, gen):
    """Pictures, videos, GIFs, PNG frames, reports, backbone checkpoints, filter checkpoints and ONNX files
    get 0666 & ~umask (0640 here), not mkstemp's 0600."""
    from fastdream.backbones import get_backbone
    from fastdream.backbones.loading import save_checkpoint as save_backbone
    from fastdream.distill.generator import DreamGenerator, GeneratorConfig
    from fastdream.distill.checkpoint import save_checkpoint
    from fastdream.distill.train import TrainConfig
    from fastdream.imageio import save_image
    from fastdream.report import write_report
    from fastdream.video import io as vio

    x = torch.rand(1, 3, 32, 48, generator=gen)
    frame = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    outs = []
    for ext in (".png", ".jpg", ".webp", ".tif", ".bmp"):
        save_image(x, tmp_path / f"p{ext}")
        outs.append(tmp_path / f"p{ext}")
    write_report(tmp_path / "r.json", {"a": 1})
    outs.append(tmp_path / "r.json")
    for name in ("v.mp4", "v.gif"):
        w = vio.open_writer(tmp_path / name, 48, 32, 10)
        w.write(frame)
        w.write(frame)
        w.close()
        outs.append(tmp_path / name)
    seq = vio.PngSequenceWriter(tmp_path / "frames")
    seq.write(frame)
    seq.close()
    outs.append(tmp_path / "frames" / "frame_00000.png")
    save_backbone(get_backbone(None, "cpu"), tmp_path / "bb.pt")
    outs.append(tmp_path / "bb.pt")
    g = DreamGenerator(GeneratorConfig(width=4, blocks=1))
    save_checkpoint(tmp_path / "g.pt", g, torch.optim.Adam(g.parameters()), 1, TrainConfig(width=4, blocks=1),
                    {"preset": "classic"}, [])
    outs.append(tmp_path / "g.pt")
    pytest.importorskip("onnxruntime")
    from fastdream.distill.export import export_onnx

    export_onnx(tmp_path / "g.pt", tmp_path / "g.onnx", example_size=(16, 16))
    outs.append(tmp_path / "g.onnx")
    for p in outs:
        assert mode(p) == 0o640, (p.name, oct(mode(p)))


def test_replacing_an_output_keeps_its_mode(tmp_path, small):
    out, rep = tmp_path / "d.png", tmp_path / "r.json"
    for p in (out, rep):
        p.write_bytes(b"old")
        os.chmod(p, 0o644)
    r = fd("dream", small, "-o", out, "--report", rep, *FAST, umask=0o077)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (96, 64) and json.loads(rep.read_text())["output"] == str(out)
    assert mode(out) == 0o644 and mode(rep) == 0o644
    # a new file under umask 077 is 0600, as `touch` would make it
    r = fd("dream", small, "-o", tmp_path / "new.png", *FAST, umask=0o077)
    assert r.returncode == 0, r.stderr
    assert mode(tmp_path / "new.png") == 0o600


# -- 2. presets and objective flags: one rule, said in --help and in the report ------------------------
def test_preset_with_an_objective_flag_records_what_ran(tmp_path, small, capsys):
    rep = tmp_path / "r.json"
    rc, err = run_main(["dream", small, "-o", tmp_path / "a.png", "--report", rep, *FAST, "--preset", "eyes",
                        "--class", "jellyfish"], capsys)
    assert rc == 0, err
    params = json.loads(rep.read_text())["params"]
    assert params["preset"] == "eyes" and params["steps"] == 2 and params["step_size"] == 0.015  # eyes' schedule
    assert "ClassLogit(107" in params["objective"] and "block7" not in params["objective"]
    assert "replace the 'eyes' preset's objective (block7 + block11)" in err  # said, not silent
    # the default preset is named in the report, with its objective
    rc, err = run_main(["dream", small, "-o", tmp_path / "b.png", "--report", rep, *FAST], capsys)
    assert rc == 0, err
    params = json.loads(rep.read_text())["params"]
    assert params["preset"] == "classic" and params["objective"] == "Layer('block9', 'l2')"
    assert err == ""
    # the preset's objective and a class, as the rule says
    rc, err = run_main(["dream", small, "-o", tmp_path / "c.png", "--report", rep, *FAST, "--preset", "eyes",
                        "--layer", "block7", "--layer", "block11", "--class", "jellyfish"], capsys)
    assert rc == 0, err
    obj = json.loads(rep.read_text())["params"]["objective"]
    assert "block7" in obj and "block11" in obj and "ClassLogit(107" in obj


def test_the_rule_is_in_help_and_the_preset_table(capsys):
    from fastdream.presets import OBJECTIVE_RULE

    for cmd in ("dream", "zoom", "video", "sheet"):
        r = fd(cmd, "--help")
        assert r.returncode == 0
        assert "replace the preset's objective" in " ".join(r.stdout.split()), cmd
    assert "replace the preset's objective" in OBJECTIVE_RULE
    r = fd("dream", "--list-presets")  # no input or -o needed
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "block7 + block11" in rows["eyes"] and "12*" in rows["eyes"] and "0.015*" in rows["eyes"]
    assert "(default)" in rows["classic"] and "block9" in rows["classic"]
    assert "2* (scale 0.85, blend 0.15)" in rows["recursive"]
    html = (REPO / "fastdream" / "web" / "static" / "index.html").read_text()
    assert "replaces the preset's objective" in html


def test_sheet_refuses_objective_flags(tmp_path, small, capsys):
    out = tmp_path / "s.png"
    rc, err = run_main(["sheet", small, "-o", out, "--class", "jellyfish", *FAST], capsys)
    one_line_error(rc, err, "one layer or channel per tile")
    assert not out.exists()


def test_web_report_names_the_default_preset():
    from fastdream.engine.compose import Term
    from fastdream.engine.objectives import ClassLogit
    from fastdream.web.jobs import DreamRequest, Job, JobQueue

    q = JobQueue(torch.device("cpu"))
    x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    job = Job(id="t", request=DreamRequest(picture=x, overrides={"octaves": 1, "steps": 1}))
    _, report = q._dream(job)
    assert report["params"]["preset"] == "classic" and report["params"]["objective"] == "Layer('block9', 'l2')"
    job = Job(id="u", request=DreamRequest(picture=x, preset="eyes", terms=[Term(ClassLogit("jellyfish"))],
                                           overrides={"octaves": 1, "steps": 1}))
    _, report = q._dream(job)
    # the class replaces the preset's layers; the BN and TV priors come with a class (docs/priors.md)
    assert report["params"]["preset"] == "eyes" and "ClassLogit(107" in report["params"]["objective"]
    assert "Layer(" not in report["params"]["objective"]


# -- 7. --help shows every default ---------------------------------------------------------------------
def _leaf_parsers():
    import argparse

    from fastdream.cli.main import build_parser

    def walk(p, name):
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield name, p
        for a in subs:
            for n, sp in a.choices.items():
                yield from walk(sp, f"{name} {n}")

    yield from walk(build_parser(), "fastdream")


def test_help_shows_every_default():
    import argparse

    seen = {}
    for name, p in _leaf_parsers():
        fmt = p._get_formatter()
        for a in p._actions:
            if not a.option_strings or a.default in (None, argparse.SUPPRESS, False, []) or a.nargs == 0:
                continue
            text = " ".join(fmt._format_action(a).split())
            assert "default" in text, (name, a.option_strings, text)
            seen[(name, a.option_strings[-1])] = text
    assert "(default: 6000)" in seen[("fastdream distill train", "--steps")]
    assert "(default: 4)" in seen[("fastdream distill train", "--batch")]
    assert "(default: 0.001)" in seen[("fastdream distill train", "--lr")]
    assert "(default: 1)" in seen[("fastdream style", "--content-weight")]
    # the schedule flags take the preset's values: the help says so, and what the default preset uses
    r = fd("dream", "--help")
    text = " ".join(r.stdout.split())
    for flag, classic in [("--octaves OCTAVES", "4"), ("--steps STEPS", "10"), ("--step-size STEP_SIZE", "0.012"),
                          ("--jitter JITTER", "32"), ("--octave-scale OCTAVE_SCALE", "1.4")]:
        at = text.index(flag, text.index("schedule:"))
        assert f"(default: from the preset; classic: {classic})" in text[at:at + 200], flag


# -- 12. progress in a log ---------------------------------------------------------------------------
def test_plain_progress_lines_off_a_terminal(tmp_path, small):
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env["FASTDREAM_PROGRESS_EVERY"] = "0.3"
    log = tmp_path / "log.txt"
    with open(log, "w") as f:  # stderr to a file, as `fastdream dream ... 2> log` gives
        r = subprocess.run([sys.executable, "-m", "fastdream.cli.main", "dream", str(small), "-o",
                            str(tmp_path / "o.png"), "--octaves", "2", "--steps", "40"], stderr=f, env=env,
                           timeout=600)
    assert r.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and all(line.startswith("small.jpg: ") and "/40 steps (" in line for line in lines), lines
    assert lines[-1].startswith("small.jpg: 40/40 steps (100%)") and "\r" not in log.read_text()
    # --progress none: nothing; a bar is only for terminals
    with open(log, "w") as f:
        r = subprocess.run([sys.executable, "-m", "fastdream.cli.main", "dream", str(small), "-o",
                            str(tmp_path / "o.png"), "--octaves", "2", "--steps", "40", "--progress", "none"],
                           stderr=f, env=env, timeout=600)
    assert r.returncode == 0 and log.read_text() == ""


def test_progress_helper_modes(monkeypatch, capsys):
    from fastdream import progress as common  # the display the commands and the video jobs share

    monkeypatch.setenv("FASTDREAM_PROGRESS_EVERY", "0")
    monkeypatch.setattr(common, "_mode", {"progress": "plain"})
    with common.progress_bar(None, "clip.mp4", unit="frame") as p:
        p.update(1)
        p.update(2)
    assert capsys.readouterr().err.splitlines() == ["clip.mp4: 1 frames, 0 s", "clip.mp4: 3 frames, 0 s"]
    monkeypatch.setattr(common, "_mode", {"progress": None})
    assert common.progress_mode() == "none"  # TQDM_DISABLE (set by the tests) keeps auto quiet
    monkeypatch.delenv("TQDM_DISABLE")
    assert common.progress_mode() == "plain"  # pytest's stderr is not a terminal
    assert common.progress_mode(enabled=False) == "none"


def test_progress_time_left_counts_from_where_a_resumed_run_starts(monkeypatch, capsys):
    from fastdream import progress as common

    clock = iter([100.0, 100.0, 100.0, 110.0, 120.0])  # t0, the first report (its count, its line), 10 s a step
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    monkeypatch.setenv("FASTDREAM_PROGRESS_EVERY", "0")
    monkeypatch.setattr(common, "_mode", {"progress": "plain"})
    p = common.Progress(6000, "train")
    p(4000)  # a run resumed at step 4,000 of 6,000 reports its start first
    p(4001)
    p(4002)
    lines = capsys.readouterr().err.splitlines()
    # 10 s a step since the start (not 20 s / 4,002 steps): the 1,998 steps left take 19,980 s
    assert lines == ["train: 4000/6000 steps (67%), 0 s", "train: 4001/6000 steps (67%), 10 s, about 19990 s left",
                     "train: 4002/6000 steps (67%), 20 s, about 19980 s left"], lines


# -- 5. --neuron inside the layer's grid -------------------------------------------------------------
def test_neuron_outside_the_grid_is_refused(tmp_path, small, capsys):
    out = tmp_path / "n.png"
    rc, err = run_main(["dream", small, "-o", out, "--neuron", "block12:5:30:40", *FAST], capsys)
    one_line_error(rc, err, "position (30, 40) is outside block12's 2x3 grid for a 96x64 dream")
    assert not out.exists()
    # with --max-size the dream (and the grid) is smaller than the picture
    rc, err = run_main(["dream", EXAMPLE, "-o", out, "--neuron", "block12:5:5:5", "--max-size", "96", *FAST], capsys)
    one_line_error(rc, err, "grid for a 96x64 dream")
    rc, err = run_main(["dream", small, "-o", out, "--neuron", "block12:5:1:2", *FAST], capsys)
    assert rc == 0, err
    assert Image.open(out).size == (96, 64)


# -- 6. one weight syntax -----------------------------------------------------------------------------
def test_star_weights_everywhere_and_hints_for_the_other_form(tmp_path, small, capsys):
    out, rep = tmp_path / "w.png", tmp_path / "r.json"
    style = tmp_path / "style.png"
    Image.open(EXAMPLE).resize((64, 48)).rotate(90, expand=True).save(style)
    # --style takes *W like every flag (and :W as before)
    for spec in (f"{style}*20", f"{style}:20"):
        rc, err = run_main(["dream", small, "-o", out, "--report", rep, *FAST, "--style", spec], capsys)
        assert rc == 0, (spec, err)
        assert "StyleObjective" in json.loads(rep.read_text())["params"]["objective"]
    from fastdream.objective_text import parse_style

    assert parse_style(f"{style}*2") == (str(style), 2.0) and parse_style(f"{style}:2") == (str(style), 2.0)
    assert parse_style(str(style)) == (str(style), 1.0)
    # the other form where *W is meant: the message says how to write it
    out = tmp_path / "never.png"
    rc, err = run_main(["dream", small, "-o", out, *FAST, "--guide", f"{style}:2"], capsys)
    one_line_error(rc, err, f"no such file; for a weight write '{style}*2'")
    rc, err = run_main(["dream", small, "-o", out, *FAST, "--class", "jellyfish:2"], capsys)
    one_line_error(rc, err, "for a weight write 'jellyfish*2'")
    rc, err = run_main(["dream", small, "-o", out, *FAST, "--layer", "block9:0.5"], capsys)
    one_line_error(rc, err, "for a weight write 'block9*0.5'")
    rc, err = run_main(["dream", small, "-o", out, *FAST, "--style", f"{style}*x"], capsys)
    one_line_error(rc, err, "the weight 'x' is not a number")
    assert not out.exists()


# -- 3. zoom to PNG frames ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["frames", "frames/f_%05d.png"])
def test_zoom_writes_png_frames(tmp_path, small, capsys, target):
    out = tmp_path / target
    if "%" in target:
        (tmp_path / "frames").mkdir()
    rc, err = run_main(["zoom", small, "-o", out, "--frames", "3", *FAST], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ([f"f_{i:05d}.png" for i in range(3)] if "%" in target else [f"frame_{i:05d}.png" for i in range(3)])
    frames = [np.asarray(Image.open(tmp_path / "frames" / n), dtype=float) for n in names]
    assert frames[0].shape == (64, 96, 3)  # odd or even, PNG frames keep the size
    assert np.abs(frames[2] - frames[0]).mean() > 1.0  # it zoomed
    rc, err = run_main(["zoom", small, "-o", tmp_path / "nofolder" / "f_%05d.png", "--frames", "2", *FAST], capsys)
    one_line_error(rc, err, "does not exist")


# -- 4. video: no false "damaged" warning with --frames; the audio cut with the frames ----------------
@pytest.fixture(scope="module")
def pan(tmp_path_factory):
    from test_video import make_pan_clip

    return make_pan_clip(tmp_path_factory.mktemp("pan") / "pan.mp4", frames=24, size=(64, 48), fps=24)


def test_video_frames_to_stdout_loses_nothing(pan, tmp_path, capsysbinary):
    from fastdream.cli.main import main

    rep = tmp_path / "r.json"
    rc = main(["video", str(pan), "-o", "-", "--frames", "2", "--report", str(rep), "--octaves", "1", "--steps", "0"])
    cap = capsysbinary.readouterr()
    assert rc == 0, cap.err
    assert len(cap.out) == 2 * 64 * 48 * 3  # two raw frames
    assert b"could not be decoded" not in cap.err
    report = json.loads(rep.read_text())
    assert report["lost_frames"] == 0 and report["frames_out"] == 2


def test_video_frames_cuts_the_audio(pan, tmp_path, capsys):
    import av

    from fastdream.cli.main import main

    out = tmp_path / "short.mp4"
    rc = main(["video", str(pan), "-o", str(out), "--frames", "6", "--octaves", "1", "--steps", "0"])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.frames == 6
        audio_end = max(float((p.pts + p.duration) * p.time_base) for p in c.demux(a) if p.pts is not None)
    assert 0.2 <= audio_end <= 0.25 + 0.05, audio_end  # 6 frames at 24 fps, not the clip's 1 s


# -- 11. video --filter names the shipped filter --------------------------------------------------------
def test_video_filter_by_name_and_by_default(pan, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import av

    from fastdream.cli.main import main
    from fastdream.distill.runtime import DEFAULT_FILTER

    def frames(path):
        with av.open(str(path)) as c:
            return [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]

    src = frames(pan)[:2]
    outs = {}
    for how in (["--filter"], ["--filter", "default"], ["--filter", str(DEFAULT_FILTER)], ["--filter", "default-int8"]):
        out, rep = tmp_path / f"f{len(outs)}.mp4", tmp_path / "r.json"
        rc = main(["video", str(pan), "-o", str(out), "--frames", "2", "--report", str(rep), "--no-flow", *how])
        assert rc == 0, capsys.readouterr().err
        got = frames(out)
        assert len(got) == 2 and np.abs(got[0] - src[0]).mean() > 3.0  # the filter changed the frames
        processor = json.loads(rep.read_text())["processor"]
        assert processor.startswith("filter:")
        if how == ["--filter"]:  # no value: the shipped default as `fastdream filter` runs it on the CPU
            assert processor.endswith("default-int8.onnx"), processor
        outs[" ".join(how)] = got
    a, b = outs["--filter"], outs["--filter default-int8"]
    assert np.abs(a[1] - b[1]).max() == 0  # no value = the 8-bit default on the CPU
    c, d = outs["--filter default"], outs[f"--filter {DEFAULT_FILTER}"]
    assert np.abs(c[1] - d[1]).max() == 0  # the name and the path of the float file
    assert 0 < np.abs(a[1] - c[1]).mean() < np.abs(c[1] - src[1]).mean()  # 8 bits: close to the float, not equal
    rc = main(["video", str(pan), "-o", str(tmp_path / "x.mp4"), "--frames", "2", "--filter", "nope"])
    one_line_error(rc, capsys.readouterr().err, "no such file, and no such filter is shipped (shipped filters: default")
    assert not (tmp_path / "x.mp4").exists()


def test_video_filter_refine(pan, tmp_path, capsys):
    """``video --filter --refine K``: every frame is the filter's output finished by K teacher steps (the
    same frame processor as ``fastdream filter --refine``); --refine without --filter is one line."""
    pytest.importorskip("onnxruntime")
    import av
    import torch

    from fastdream.cli.main import main
    from fastdream.distill.refine import Refiner
    from fastdream.distill.runtime import FilterRunner

    out, rep = tmp_path / "r.mp4", tmp_path / "r.json"
    work = tmp_path / "frames"
    rc = main(["video", str(pan), "-o", str(work), "--frames", "2", "--report", str(rep), "--no-flow", "--filter",
               "--refine", "1"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(rep.read_text())
    assert r["processor"].endswith("+refine1")
    with av.open(str(pan)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    x = torch.from_numpy(first).permute(2, 0, 1)[None].float().div(255)
    runner = FilterRunner()
    ref = Refiner(runner.teacher, 1)(runner(x))
    want = (ref[0].permute(1, 2, 0).numpy() * 255).round()
    got = np.asarray(Image.open(sorted(work.glob("*.png"))[0]).convert("RGB"), dtype=float)
    assert np.abs(got - want).max() <= 1
    rc = main(["video", str(pan), "-o", str(out), "--frames", "2", "--refine", "1"])
    one_line_error(rc, capsys.readouterr().err, "--refine goes with --filter")
    assert not out.exists()


# -- 9. errors in one line ----------------------------------------------------------------------------
def test_serve_on_a_busy_port_is_one_line(tmp_path):
    pytest.importorskip("uvicorn")
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = fd("serve", "--port", port, timeout=120)
    finally:
        s.close()
    one_line_error(r.returncode, r.stderr, f"cannot listen on 127.0.0.1:{port}: address already in use")
    assert "choose another --port" in r.stderr


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    torch.save({"format": "x", "m": torch.nn.Linear(2, 2)}, d / "pickled.pt")
    torch.save({"a": torch.zeros(1000)}, d / "good.pt")
    b = (d / "good.pt").read_bytes()
    (d / "corrupt.pt").write_bytes(b[: len(b) // 2])
    (d / "text.pt").write_text("hello, not a checkpoint")
    return d


@pytest.mark.parametrize("name,msg", [
    ("pickled", "it holds pickled Python objects (torch.nn.modules.linear.Linear), which fastdream does not load "
                "(unpickling can run code)"),
    ("corrupt", "the file is damaged or truncated"),
    ("text", "not a file torch.save wrote"),
])
def test_export_of_a_bad_checkpoint_is_one_clean_line(bad_checkpoints, tmp_path, capsys, name, msg):
    out = tmp_path / "o.onnx"
    rc, err = run_main(["export", bad_checkpoints / f"{name}.pt", "-o", out], capsys)
    one_line_error(rc, err, f"not a fastdream filter checkpoint: {msg}")
    assert "weights_only" not in err and "trust" not in err and not err.rstrip().endswith(("high", "a"))
    assert not out.exists()
    rc, err = run_main(["dream", EXAMPLE, "-o", tmp_path / "d.png", "--backbone", bad_checkpoints / f"{name}.pt"], capsys)
    assert rc == 2 and "\x1b" not in err and "weights_only" not in err and len(err.strip().splitlines()) == 1


def test_filter_given_a_checkpoint_says_export_it(tmp_path, small, capsys, gen):
    pytest.importorskip("onnxruntime")
    from fastdream.distill.generator import DreamGenerator, GeneratorConfig
    from fastdream.distill.checkpoint import save_checkpoint
    from fastdream.distill.train import TrainConfig

    g = DreamGenerator(GeneratorConfig(width=4, blocks=1))
    save_checkpoint(tmp_path / "filter.pt", g, torch.optim.Adam(g.parameters()), 1, TrainConfig(width=4, blocks=1),
                    {"preset": "classic"}, [])
    out = tmp_path / "f.png"
    rc, err = run_main(["filter", small, "-o", out, "--model", tmp_path / "filter.pt"], capsys)
    one_line_error(rc, err, f"a PyTorch checkpoint, not an ONNX filter; make the filter with `fastdream export "
                            f"{tmp_path / 'filter.pt'} -o filter.onnx`")
    assert "protobuf" not in err.lower() and not out.exists()


def test_dataset_resume_names_the_setting_that_differs(tmp_path):
    from fastdream.distill.dataset import CropRecipe, render_dataset
    from fastdream.errors import InputError

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(EXAMPLE).resize((80, 60)).save(photos / "a.png")

    def teacher(x, index):
        return x.flip(-1)

    out = tmp_path / "pairs"
    render_dataset(photos, out, 2, teacher, {"preset": "classic", "steps": 10}, CropRecipe(size=24, seed=3))
    with pytest.raises(InputError) as e:
        render_dataset(photos, out, 2, teacher, {"preset": "classic", "steps": 12}, CropRecipe(size=32, seed=3),
                       resume=True)
    msg = str(e.value)
    assert "teacher.steps: 10 before, 12 now" in msg and "crop.size: 24 before, 32 now" in msg, msg


def test_class_logit_takes_a_name():
    from fastdream.errors import FastdreamError
    from fastdream.objectives import ClassLogit

    assert ClassLogit("jellyfish").index == 107 and ClassLogit("tabby cat").index == 281
    assert ClassLogit("107").index == ClassLogit(107).index == 107
    with pytest.raises(FastdreamError, match="did you mean 'jellyfish'"):
        ClassLogit("jellyfsh")


def test_web_errors_name_the_form_fields_not_cli_flags():
    from fastdream.errors import FastdreamError
    from fastdream.web.app import ServerConfig, build_request, parse_settings
    from fastdream.backbones import get_backbone

    bb = get_backbone(None, "cpu")
    x = torch.rand(1, 3, 64, 64)
    for form, want in [({"layer": "blok9"}, "layer: unknown layer 'blok9'"),
                       ({"layer": "block9:l2", "region": "0.1,0.1,0.2,0.2"}, None)]:
        settings = parse_settings(form, ServerConfig())
        if want is None:
            build_request(settings, x, None, ServerConfig(), bb)
            continue
        with pytest.raises(FastdreamError) as e:
            build_request(settings, x, None, ServerConfig(), bb)
        assert str(e.value).startswith(want) and "--" not in str(e.value), str(e.value)


# -- 10. folder batches ---------------------------------------------------------------------------------
def test_folder_batch_skips_an_unreadable_picture(tmp_path):
    src, dst, rep = tmp_path / "photos", tmp_path / "dreams", tmp_path / "r.json"
    src.mkdir()
    Image.open(EXAMPLE).resize((96, 64)).save(src / "a.jpg")
    (src / "b.png").write_text("not a picture")
    Image.open(EXAMPLE).resize((64, 96)).save(src / "c.png")
    r = fd("dream", src, "-o", dst, "--report", rep, *FAST)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "b.png: not a picture" in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "c.png"]  # the others were dreamed
    assert Image.open(dst / "c.png").size == (64, 96)
    report = json.loads(rep.read_text())
    assert [p["input"] for p in report["pictures"]] == [str(src / "a.jpg"), str(src / "c.png")]
    assert report["failed"] == [{"input": str(src / "b.png"), "error": f"{src / 'b.png'}: not a picture Pillow can read"}]
    # --format: the format asked for, whatever the inputs'
    (src / "b.png").unlink()
    r = fd("dream", src, "-o", tmp_path / "jpgs", "--format", "jpg", *FAST)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "jpgs").iterdir()) == ["a.jpg", "c.jpg"]
    assert Image.open(tmp_path / "jpgs" / "a.jpg").format == "JPEG"
    # two inputs that would write the same file are refused before any work
    Image.open(EXAMPLE).resize((32, 32)).save(src / "a.png")
    r = fd("dream", src, "-o", tmp_path / "clash", *FAST)
    one_line_error(r.returncode, r.stderr, "a.jpg and a.png would both be written to")
    assert not (tmp_path / "clash").exists()


# -- 8. objective figures independent of the tiling; --max-size keeps the dream's strength ---------------
def test_objective_is_measured_the_same_way_whatever_the_tiling(monkeypatch, gen):
    from fastdream.backbones import get_backbone
    from fastdream.engine import dream as engine
    from fastdream.engine.dream import DreamConfig, Dreamer
    from fastdream.engine.objectives import ClassLogit, Layer

    bb = get_backbone(None, "cpu")
    x = torch.rand(1, 3, 150, 220, generator=gen)
    obj = Layer("block9") + 0.5 * ClassLogit(107).restrict(box=(0.5, 0.0, 1.0, 1.0))
    configs = [DreamConfig(), DreamConfig(max_tile_pixels=4000), DreamConfig(tile=64, tile_overlap=16)]
    values = [Dreamer(bb, obj, c).evaluate(x) for c in configs]
    assert values[0] == values[1] == values[2], values
    # above the one-pass budget: fixed tiles, again the same whatever the dream's tiling
    monkeypatch.setattr(engine, "EVAL_PIXELS", 10_000)
    monkeypatch.setattr(engine, "EVAL_TILE", 96)
    monkeypatch.setattr(engine, "EVAL_OVERLAP", 16)
    tiled = [Dreamer(bb, obj, c).evaluate(x) for c in configs]
    assert tiled[0] == tiled[1] == tiled[2] and tiled[0] != values[0], tiled


def test_reports_agree_across_tilings(tmp_path, small, capsys):
    before = []
    for extra in ([], ["--max-tile-pixels", "2500", "--tile-overlap", "8"], ["--tile", "48", "--tile-overlap", "8"]):
        rep = tmp_path / "r.json"
        rc, err = run_main(["dream", small, "-o", tmp_path / "t.png", "--report", rep, *FAST, *extra], capsys)
        assert rc == 0, err
        before.append(json.loads(rep.read_text())["objective_before"])
    assert before[0] == before[1] == before[2], before


def test_max_size_keeps_the_dreams_strength(tmp_path, capsys):
    src = tmp_path / "big.png"
    Image.open(EXAMPLE).resize((360, 240), Image.Resampling.LANCZOS).save(src)
    fig = {}
    for name, extra in [("finish", []), ("none", ["--finish-steps", "0"])]:
        out, rep = tmp_path / f"{name}.png", tmp_path / f"{name}.json"
        rc, err = run_main(["dream", src, "-o", out, "--report", rep, "--max-size", "96", "--octaves", "2",
                            "--steps", "6", *extra], capsys)
        assert rc == 0, err
        r = json.loads(rep.read_text())
        assert Image.open(out).size == (360, 240) and r["params"]["max_size"] == 96
        a = np.asarray(Image.open(out), dtype=float) - np.asarray(Image.open(src), dtype=float)
        lap = np.abs(a[1:-1, 1:-1] * 4 - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]).mean()
        fig[name] = (r["objective_before"], r["objective_after"], r["steps"], lap)
    (b, after, steps, sharp), (_, after0, steps0, sharp0) = fig["finish"], fig["none"]
    assert steps == steps0 + 3  # half of --steps at full size
    assert after > 1.2 * b and after > 1.4 * after0, fig  # stronger at full size than the input and the bare add-back
    assert sharp > 1.5 * sharp0, fig  # the change has fine detail at full size, not only enlarged blobs


# -- 13. docs that say what the code does ---------------------------------------------------------------
def _png_header(path, w, h):
    """A PNG that declares w x h pixels (a decompression bomb's header, a few bytes on disk)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


def test_docs_quote_the_real_messages_and_numbers(tmp_path, capsys):
    import re

    from fastdream.stylize.transfer import FINAL_ITERS

    rel = (REPO / "docs" / "reliability.md").read_text()
    quoted = re.search(r"`photo\.png: (\d+)x(\d+) pixels is too large \(limit (\d+) Mpx; a decompression bomb\?\)`", rel)
    assert quoted, "reliability.md quotes the decompression-bomb message"
    w, h = int(quoted.group(1)), int(quoted.group(2))
    rc, err = run_main(["dream", _png_header(tmp_path / "photo.png", w, h), "-o", tmp_path / "o.png"], capsys)
    assert rc == 2
    real = err.strip().split("error: ", 1)[1].replace(str(tmp_path) + "/", "")
    alt = re.search(r"\(or `(\d+ Mpx is too large) \.\.\.`", rel).group(1)
    assert real in (quoted.group(0).strip("`"), f"photo.png: {alt} (limit {quoted.group(3)} Mpx; a decompression bomb?)"), real
    # just above the limit, below Pillow's ceiling or not: the same wording
    rc, err = run_main(["dream", _png_header(tmp_path / "b.png", 13400, 13400), "-o", tmp_path / "o.png"], capsys)
    one_line_error(rc, err, "is too large (limit 179 Mpx; a decompression bomb?)")
    style = (REPO / "docs" / "style.md").read_text()
    assert f"the output scale at least {FINAL_ITERS} (never more than N)" in style
    readme = " ".join((REPO / "README.md").read_text().split())
    gallery = (REPO / "docs" / "make_gallery.sh").read_text()
    boxes = dict(re.findall(r'--class "([a-z ]+)@([0-9.,]+)"', gallery))

    def where(box):
        x0, y0, x1, y1 = map(float, box.split(","))
        return ("upper" if y1 <= 0.5 else "lower" if y0 >= 0.5 else "middle") + " " + \
               ("right" if x0 >= 0.5 else "left" if x1 <= 0.5 else "centre")

    assert where(boxes["jellyfish"]) == "upper right" and where(boxes["golden retriever"]) == "lower left"
    assert "jellyfish in the upper right, golden retriever in the lower left" in readme
    web = (REPO / "docs" / "web.md").read_text()
    assert "| same job, `fastdream dream`, default environment | 105 / 116 s |" not in web
