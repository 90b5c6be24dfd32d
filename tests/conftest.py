import os
import pathlib

import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]

# Tests start the CLI in subprocesses (`python -m fastdream.cli.main`, `python -c ...`) from the repository
# root; Python would put that folder first on sys.path and import the source tree, which has no compiled
# module after a plain `pip install .`. PYTHONSAFEPATH (Python >= 3.11) keeps them on the installed
# package; PYTHONPATH (for a developer's in-place build) still applies.
os.environ.setdefault("PYTHONSAFEPATH", "1")
DATA = REPO / "tests" / "data"


def ctrl_c_default() -> None:
    """``preexec_fn`` of a command that a test interrupts with SIGINT: a shell that starts a job in the
    background without job control (``nohup bash .ci/run &``) gives it SIGINT ignored, and the children
    inherit that, so Ctrl-C would do nothing. The tests are about a person pressing Ctrl-C, whose shell
    leaves SIGINT at its default."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cuda_available() -> bool:
    try:
        import fastdream

        return fastdream.has_cuda() and torch.cuda.is_available()
    except Exception:
        return False


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU visible (or CUDA not compiled)")

# Devices every kernel test runs on; CUDA cases are skipped (not dropped) when no GPU is visible.
DEVICES = ["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])]


@pytest.fixture
def gen():
    """A seeded generator: kernel tests use random inputs, never zeros."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    yield
