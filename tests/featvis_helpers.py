"""Shared by the featvis tests: run one command through ``fastdream.cli.main.main``."""
from __future__ import annotations

import pytest

from fastdream.cli import main as cli_main


def run_cli(monkeypatch, capsys, command: str, argv: list[str]) -> tuple[int, str, str]:
    """``main([command, *argv])`` with only ``command`` registered (the dispatcher imports every command
    module it lists; these tests exercise one). Returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli_main, "COMMANDS", {command: command})
    try:
        rc = cli_main.main([command, *argv])
    except SystemExit as e:  # argparse errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str) -> None:
    assert rc == 2, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "error" in lines[0]


__all__ = ["run_cli", "assert_one_line_error", "pytest"]
