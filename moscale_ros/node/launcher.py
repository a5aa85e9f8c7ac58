"""Run ``moscale_node`` as a child process (tests, bench, demo) through one of its real entry
points, with the shipped parameter file by default, output captured to a log:

* ``console``: ``moscale_node --ros-args --params-file config/moscale.yaml -p ...`` (the console script);
* ``cli``: ``moscale node --params-file config/moscale.yaml -p ...``;
* ``module``: ``python -m moscale_ros.node.main --ros-args ...`` (no installed script needed).

``managed=True`` starts the lifecycle variant instead (``moscale_lifecycle_node``, or
``moscale_ros.node.main:main_managed`` without the installed script).

Imports no ROS package itself, so core code (the bench) can start a node without rclpy.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from moscale_common.paths import resource


def ros_value(value: Any) -> str:
    """A Python value as a ``-p name:=value`` literal (YAML: ``true``, ``[1, 2]``, ``'text'``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ros_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float) and not math.isfinite(value):  # YAML spells them .inf, -.inf, .nan
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return repr(value)


class NodeProcess:
    """``moscale_node`` in a subprocess with ``params`` on top of ``params_file``; ``log`` holds its output."""

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        params_file: str | Path | None = None,
        remaps: Sequence[tuple[str, str]] = (),
        log_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        entry: Literal["console", "cli", "module"] | None = None,
        managed: bool = False,
        extra_params_files: Sequence[str | Path] = (),
    ) -> None:
        self.params_file = Path(params_file) if params_file is not None else resource("config/moscale.yaml")
        self.params = dict(params or {})
        self.extra_params_files = [Path(p) for p in extra_params_files]  # loaded after params_file (they win)
        self.remaps = list(remaps)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="moscale-node-", suffix=".log")[1])
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self._interrupted = False
        self.managed = managed
        console = Path(sys.executable).parent / ("moscale_lifecycle_node" if managed else "moscale_node")
        self.entry = entry or ("console" if console.is_file() else "module")
        self._console = console

    def argv(self) -> list[str]:
        """The command line of the chosen entry point, parameter file first, then ``-p``/``-r``."""
        if self.managed and self.entry != "console":
            run = "import sys; from moscale_ros.node.main import main_managed; sys.exit(main_managed())"
            argv = [sys.executable, "-c", run, "--ros-args", "--params-file", str(self.params_file)]
        elif self.entry == "cli":
            argv = [sys.executable, "-m", "moscale_ros.cli", "node", "--params-file", str(self.params_file)]
        else:
            head = [str(self._console)] if self.entry == "console" else [sys.executable, "-m", "moscale_ros.node.main"]
            argv = [*head, "--ros-args", "--params-file", str(self.params_file)]
        if self.extra_params_files and self.entry == "cli" and not self.managed:
            argv += ["--ros-args"]
        for path in self.extra_params_files:
            argv += ["--params-file", str(path)]
        for name, value in self.params.items():
            argv += ["-p", f"{name}:={ros_value(value)}"]
        for source, target in self.remaps:
            argv += ["-r", f"{source}:={target}"]
        return argv

    def start(self) -> NodeProcess:
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout: float = 60.0) -> bool:
        """True once ``needle`` appears in the output; False on timeout or if the process ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log():
                return True
            if self.process is not None and self.process.poll() is not None:
                return needle in self.log()
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` (e.g. SIGTERM, as a launch file does) if the process still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self._interrupted = True

    def interrupt(self) -> None:
        """Send SIGINT (a clean ROS shutdown) once; a second one would be an impatient user's."""
        if self.process is not None and self.process.poll() is None and not self._interrupted:
            self.process.send_signal(signal.SIGINT)
            self._interrupted = True

    def stop(self, timeout: float = 10.0) -> int | None:
        """:meth:`interrupt`, then SIGKILL after ``timeout``; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.interrupt()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> NodeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
