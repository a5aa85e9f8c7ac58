"""The one CLI: every subcommand registers, help is fast (no heavy imports), errors exit 2 with a message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moscale_ros.cli import COMMAND_MODULES, build_parser, main


def test_every_subcommand_is_registered():
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor
    assert set(COMMAND_MODULES) <= set(choices)
    for name in ("data", "train", "generate", "retarget", "eval", "bench", "node", "demo", "model"):
        assert name in choices


def test_help_does_not_import_torch_or_rclpy():
    code = (
        "import sys; from moscale_ros.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules, 'rclpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_user_errors_exit_2_with_the_message(tmp_path, capsys):
    assert main(["model", "info", str(tmp_path / "missing.safetensors")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
