"""`fastdream dream` and `fastdream sheet` as a user runs them: outputs checked for content, reports
for their fields, bad input for the one-line message, exit code 2 and no output file."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, ctrl_c_default

EXAMPLE = REPO / "examples" / "chelsea.jpg"
FAST = ["--octaves", "2", "--steps", "3"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The example at 180x120, so that dreams in these tests take seconds."""
    p = tmp_path_factory.mktemp("in") / "small.jpg"
    Image.open(EXAMPLE).resize((180, 120), Image.Resampling.LANCZOS).save(p, quality=95)
    return p


def fd(*args, cwd=None):
    """Run the CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "fastdream.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_dream_writes_picture_report_and_params(tmp_path, small):
    out, rep = tmp_path / "d.png", tmp_path / "r.json"
    r = fd("dream", small, "-o", out, "--report", rep, *FAST)
    assert r.returncode == 0, r.stderr
    img = Image.open(out)
    src = Image.open(small)
    assert img.size == src.size
    diff = np.abs(np.asarray(img, dtype=float) - np.asarray(src.convert("RGB"), dtype=float)).mean()
    assert diff > 3.0  # it dreamed
    report = json.loads(rep.read_text())
    for key in ["input_size", "output_size", "seconds", "peak_rss_mb", "objective_before", "objective_after", "params"]:
        assert key in report
    assert report["input_size"] == report["output_size"] == list(src.size)
    assert report["objective_after"] > report["objective_before"] > 0
    assert report["params"]["steps"] == 3 and report["params"]["seed"] == 0
    assert json.loads(img.text["fastdream"])["octaves"] == 2


def test_max_size_keeps_the_size(tmp_path):
    out = tmp_path / "m.jpg"
    r = fd("dream", EXAMPLE, "-o", out, "--max-size", "120", *FAST)
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == Image.open(EXAMPLE).size


def test_same_seed_same_bytes(tmp_path, small):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for p, seed in [(a, 3), (b, 3), (c, 4)]:
        r = fd("dream", small, "-o", p, "--seed", seed, *FAST, "--layer", "block6")
        assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_folder_in_folder_out(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.open(EXAMPLE).resize((96, 64)).save(src / "one.jpg")
    Image.open(EXAMPLE).resize((64, 96)).save(src / "two.png")
    (src / "notes.txt").write_text("not a picture")
    r = fd("dream", src, "-o", tmp_path / "out", "--octaves", "1", "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.png", "two.png"]
    assert Image.open(tmp_path / "out" / "two.png").size == (64, 96)


def _bad_inputs(tmp_path):
    txt = tmp_path / "text.png"
    txt.write_text("hello")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.png"
    Image.open(EXAMPLE).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[:300])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(bomb)
    return [
        ([tmp_path / "missing.png"], "no such file"),
        ([txt], "not a picture"),
        ([empty], "empty file"),
        ([trunc], "cannot read"),
        ([bomb], "too large"),
        ([EXAMPLE, "--layer", "blok9"], "did you mean 'block9'"),
        ([EXAMPLE, "--class", "jellyfsh"], "jellyfish"),
        ([EXAMPLE, "--preset", "nope"], "unknown preset"),
        ([EXAMPLE, "--steps", "many"], "expected a whole number"),
        ([EXAMPLE, "--step-size", "-1"], "must be > 0"),
        ([EXAMPLE, "--sigma", "a,b"], "numbers separated by commas"),
        ([EXAMPLE, "--channel", "block9:9999"], "out of range"),
        ([EXAMPLE, "--layer", "block9@0.5,0.5,0.2,0.9"], "box"),
        ([EXAMPLE, "--device", "tpu"], "unknown device"),
    ]


def run_main(args, capsys):
    """The CLI in this process (fast); returns (exit code, stderr)."""
    from fastdream.cli.main import main

    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse
        rc = e.code
    return rc, capsys.readouterr().err


def test_bad_inputs_fail_cleanly(tmp_path, capsys):
    out = tmp_path / "out.png"
    for args, msg in _bad_inputs(tmp_path):
        rc, err = run_main(["dream", *args, "-o", out, "--octaves", "1", "--steps", "1"], capsys)
        assert rc == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, err)
        assert not out.exists()
    # and once in a fresh process, as a user sees it: one line, no traceback
    r = fd("dream", tmp_path / "text.png", "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("out,msg", [("nofolder/x.png", "does not exist"), ("x.xyz", "cannot write")])
def test_bad_output_paths(tmp_path, out, msg):
    r = fd("dream", EXAMPLE, "-o", tmp_path / out)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_sheet_of_layers(tmp_path):
    out = tmp_path / "sheet.png"
    r = fd("sheet", EXAMPLE, "-o", out, "--layers", "block3,block9", "--cell", "96", "--octaves", "1",
           "--steps", "2")
    assert r.returncode == 0, r.stderr
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[1] > 2 * 96  # two tiles side by side
    assert sheet[6:14, 8:30].max() > 200  # a white label on the first tile


def test_layers_and_help():
    r = fd("layers", "--size", "224")
    assert r.returncode == 0 and "block9" in r.stdout and "112" in r.stdout
    r = fd("dream", "--help")
    assert r.returncode == 0 and "classic" in r.stdout and "--sigma" in r.stdout


def test_sigint_while_torch_loads_is_one_line(tmp_path, small):
    # Ctrl-C while the command's libraries are still loading: an interrupt inside `import torch` used to leave
    # half-imported modules (numpy.linalg recursing without end: exit 1 with a traceback) or end the process by
    # the signal (-2); main() holds Ctrl-C back until the imports are done
    import signal
    import time

    for delay in (0.0, 0.15, 0.3, 0.45, 0.6):
        out = tmp_path / f"never{delay}.png"
        p = subprocess.Popen([sys.executable, "-m", "fastdream.cli.main", "dream", str(small), "-o", str(out),
                              "--steps", "200"], stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_default)
        deadline = time.time() + 120
        while time.time() < deadline and "libtorch" not in open(f"/proc/{p.pid}/maps").read():
            time.sleep(0.01)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130, (delay, p.returncode, err[-2000:])
        assert err.strip().splitlines()[-1] == "fastdream dream: interrupted; no output was written", (delay, err)
        assert "Traceback" not in err and not out.exists()


def test_sigint_leaves_no_output(tmp_path, small):
    import signal
    import time

    out = tmp_path / "never.png"
    p = subprocess.Popen([sys.executable, "-m", "fastdream.cli.main", "dream", str(small), "-o", str(out),
                          "--steps", "200"], stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_default)
    # wait until the command is past start-up (torch loaded), then give it a moment to start dreaming
    deadline = time.time() + 120
    while time.time() < deadline and "libtorch" not in open(f"/proc/{p.pid}/maps").read():
        time.sleep(0.2)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "interrupted; no output was written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
