#!/usr/bin/env bash
# One-command setup: .venv with Python 3.11, torch (pinned CPU wheel), ROS 2 Kilted wheels,
# the project's interfaces built with CMake and installed into the venv, Pinocchio/Pink,
# robot models, the offline text encoder, and this package in editable mode.
# Idempotent: a stamp records what was installed; a second run only checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

die() { echo "setup: error: $*" >&2; exit 1; }

command -v "$PY" >/dev/null 2>&1 || die "Python 3.11 not found (looked for '$PY'). Install python3.11 (with venv) or set PYTHON=/path/to/python3.11."
PY_VERSION=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
[ "$PY_VERSION" = "3.11" ] \
  || die "'$PY' is Python '${PY_VERSION:-unknown}', not 3.11 (the ROS 2 Kilted wheels are built for CPython 3.11)."
command -v cmake >/dev/null 2>&1 || die "cmake not found: install it (Debian: apt-get install cmake)."
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || die "no C++ compiler found: install one (Debian: apt-get install g++)."

stamp_inputs() {
  cat scripts/setup.sh requirements.txt requirements-ros.txt setup.py package.xml CMakeLists.txt \
    cmake/*.cmake msg/*.msg action/*.action 2>/dev/null
  echo "$TORCH_SPEC"
}
STAMP="$VENV/.moscale-setup-stamp"
WANT=$(stamp_inputs | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: .venv is up to date ($VENV)"
  exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "pip>=24" wheel "setuptools>=70"
# torch first and pinned: anything unpinned before it pulls the newest CUDA build (GBs).
# GPU machines: TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" make install
# shellcheck disable=SC2086
"${PIP[@]}" install $TORCH_SPEC
"${PIP[@]}" install -r requirements-ros.txt
"${PIP[@]}" install -r requirements.txt

echo "setup: building the ROS 2 interfaces (msg/, action/) into the venv"
BUILD="$ROOT/build/interfaces"
mkdir -p "$BUILD"
env PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" \
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$VENV/bin/python3" -DMOSCALE_INSTALL_PYTHON_PACKAGES=OFF \
  -DCMAKE_BUILD_TYPE=Release >"$ROOT/build/cmake-configure.log" 2>&1 \
  || { tail -40 "$ROOT/build/cmake-configure.log"; die "CMake configure failed (log: build/cmake-configure.log)"; }
env PATH="$VENV/bin:$PATH" AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" \
  cmake --build "$BUILD" -j"$(nproc)" >"$ROOT/build/cmake-build.log" 2>&1 \
  || { tail -40 "$ROOT/build/cmake-build.log"; die "interface build failed (log: build/cmake-build.log)"; }
cmake --install "$BUILD" >"$ROOT/build/cmake-install.log" 2>&1 \
  || { tail -40 "$ROOT/build/cmake-install.log"; die "interface install failed"; }
# The generated half of the moscale_ros package must not be a regular package of its own,
# or it would hide the source half; moscale_ros/__init__.py joins the two (see README).
rm -f "$VENV"/lib/python3.11/site-packages/moscale_ros/__init__.py

"${PIP[@]}" install --no-deps --no-build-isolation -e . --config-settings editable_mode=compat

"$VENV/bin/python" - <<'PY'
import moscale_common, moscale_ros, retarget  # noqa: F401
from moscale_ros.msg import MotionPlan  # noqa: F401
from moscale_ros.action import GenerateMotion  # noqa: F401
import rclpy, torch, pinocchio  # noqa: F401
print("setup: imports ok (torch", torch.__version__, ")")
PY
echo "$WANT" >"$STAMP"
echo "setup: done in $(( $(date +%s) - start )) s"
