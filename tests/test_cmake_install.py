"""The package builds and installs the way colcon builds an ament_cmake package for a ROS workspace:
CMake configure/build/install with the Python packages included (``MOSCALE_INSTALL_PYTHON_PACKAGES=ON``,
the default; scripts/setup.sh turns it off and uses pip instead). The installed tree must then work on
its own: hand-written and generated modules in one ``moscale_ros`` package, the executables, and the
share directory with launch/, config/ and package.xml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
SKIPPED_IN_COPY = (".git", ".venv", "build", "cache", "out", "__pycache__", ".pytest_cache", ".ruff_cache")


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def install_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cmake") is None:
        pytest.fail("cmake not found: scripts/setup.sh requires it, so the test does too")
    # A workspace copy, as colcon sees src/moscale_ros: with the venv inside the checkout, CMake refuses
    # to export the venv's include paths from a source tree that contains them.
    source = tmp_path_factory.mktemp("ws") / "moscale_ros"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIPPED_IN_COPY))
    build = tmp_path_factory.mktemp("cmake_build")
    prefix = tmp_path_factory.mktemp("install")
    env = {
        **os.environ,
        "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AMENT_PREFIX_PATH": str(VENV),
        "CMAKE_PREFIX_PATH": str(VENV),
    }
    _run(
        [
            "cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}", "-DBUILD_TESTING=OFF",
            f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release",
        ],
        env,
    )  # fmt: skip
    _run(["cmake", "--build", str(build), f"-j{os.cpu_count() or 1}"], env)
    _run(["cmake", "--install", str(build)], env)
    return prefix


def test_install_tree_has_the_package_the_executables_and_the_share_directory(install_prefix: Path) -> None:
    site = install_prefix / "lib" / PY / "site-packages"
    package = site / "moscale_ros"
    assert "extend_path" in (package / "__init__.py").read_text(), "the hand-written __init__.py must win"
    for module in ("pipeline.py", "node/node.py", "generation/generator.py", "msg/_motion_plan.py",
                   "action/_generate_motion.py"):  # fmt: skip
        assert (package / module).is_file(), module
    assert (site / "retarget" / "__init__.py").is_file()
    assert (site / "moscale_common" / "__init__.py").is_file()
    for program in ("moscale_node", "moscale"):
        assert os.access(install_prefix / "lib" / "moscale_ros" / program, os.X_OK), program
    share = install_prefix / "share" / "moscale_ros"
    for item in ("package.xml", "launch/moscale.launch.py", "config/moscale.yaml"):
        assert (share / item).is_file(), item
    assert (install_prefix / "share" / "ament_index" / "resource_index" / "packages" / "moscale_ros").is_file()


def test_installed_package_imports_without_the_source_checkout(install_prefix: Path, tmp_path: Path) -> None:
    site = install_prefix / "lib" / PY / "site-packages"
    # Drop the editable checkout from sys.path: everything must come from the install prefix.
    (tmp_path / "sitecustomize.py").write_text(
        f"import sys\nsys.path[:] = [p for p in sys.path if p != {str(ROOT)!r}]\n"
    )
    probe = (
        "import moscale_common, moscale_ros, moscale_ros.pipeline as pipeline, retarget\n"
        "from moscale_ros.msg import MotionPlan\n"
        "from moscale_ros.action import GenerateMotion\n"
        "print(pipeline.__file__); print(retarget.__file__); print(moscale_common.__file__)\n"
        "print(MotionPlan.__module__)\n"
        "print(GenerateMotion.Goal().text == '')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{site}", "AMENT_PREFIX_PATH": str(install_prefix)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    pipeline_file, retarget_file, common_file, msg_module, goal_ok = result.stdout.split()
    assert all(f.startswith(str(site)) for f in (pipeline_file, retarget_file, common_file))
    assert msg_module.startswith("moscale_ros.msg") and goal_ok == "True"
