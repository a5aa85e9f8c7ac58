"""scripts/setup.sh refuses to start, with a clear message, when a prerequisite is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_setup(env_path: str, python: str) -> subprocess.CompletedProcess:
    env = {"PATH": env_path, "PYTHON": python, "VENV": "/nonexistent/venv", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60
    )


def _bin_dir(tmp_path: Path, tools: list[str]) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        # The real interpreter behind the venv (a pyenv shim would need pyenv on PATH).
        found = os.path.realpath(sys.executable) if tool == "python3.11" else shutil.which(tool)
        assert found, f"{tool} is needed to run this test"
        (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_python_is_named(tmp_path):
    result = _run_setup(_bin_dir(tmp_path, ["dirname"]), "python-that-does-not-exist")
    assert result.returncode != 0
    assert "Python 3.11 not found" in result.stderr


def test_wrong_python_version_is_named(tmp_path):
    result = _run_setup(_bin_dir(tmp_path, ["dirname"]), "/bin/true")
    assert result.returncode != 0
    assert "not 3.11" in result.stderr


def test_missing_cmake_is_named(tmp_path):
    path = _bin_dir(tmp_path, ["dirname", "python3.11"])
    result = _run_setup(path, "python3.11")
    assert result.returncode != 0
    assert "cmake not found" in result.stderr
