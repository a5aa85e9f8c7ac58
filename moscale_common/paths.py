"""Where the project's resources (config/, models/) and caches live, with no magic paths.

Resources are looked up under ``$MOSCALE_HOME`` if set, else the source checkout (editable or
pip install), else the ROS share directory of a colcon install. Caches and training outputs go
under ``$MOSCALE_CACHE`` (default: ``<checkout>/cache``, git-ignored; ``~/.cache/moscale_ros``
when the package is not a checkout).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path

from moscale_common.errors import CheckpointError

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parent


def _share_dir() -> Path | None:
    prefix = Path(sys.prefix) / "share" / "moscale_ros"
    if prefix.is_dir():
        return prefix
    for root in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(root) / "share" / "moscale_ros"
        if root and candidate.is_dir():
            return candidate
    return None


def resource_root() -> Path:
    """Directory that holds config/ and models/."""
    if os.environ.get("MOSCALE_HOME"):
        return Path(os.environ["MOSCALE_HOME"])
    if (_CHECKOUT / "config").is_dir():
        return _CHECKOUT
    return _share_dir() or _CHECKOUT


def resource(relative: str | Path) -> Path:
    """Absolute path of a shipped resource, e.g. ``resource("config/moscale.yaml")``."""
    path = Path(relative)
    return path if path.is_absolute() else resource_root() / path


def local_or_resource(path: str | Path) -> Path:
    """``path`` itself if it exists or is absolute, else the shipped resource of that name (so
    ``config/train/tokenizer.yaml`` works from any directory)."""
    path = Path(path)
    return path if path.is_absolute() or path.exists() else resource(path)


def cache_root() -> Path:
    """Root of caches and training outputs (created on demand by the writers)."""
    if os.environ.get("MOSCALE_CACHE"):
        return Path(os.environ["MOSCALE_CACHE"])
    if (_CHECKOUT / ".git").exists() or (_CHECKOUT / "setup.py").exists():
        return _CHECKOUT / "cache"
    return Path.home() / ".cache" / "moscale_ros"


def shared_data_archive() -> Path:
    """The Bandai-Namco archive in the sibling ``shared/data`` folder, when it is there."""
    return _CHECKOUT.parent / "shared" / "data" / "bandai-namco-motion-bvh.tar.xz"


def check_regular_file(path: Path) -> None:
    """CheckpointError unless ``path`` is a regular file (following symlinks): "checkpoint not
    found" when nothing is there, else "not a regular file" naming what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise CheckpointError(f"{path}: not a regular file (a dangling symbolic link)") from None
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:  # ELOOP (a symlink loop), ENOTDIR, EACCES, ENAMETOOLONG ...
        what = "a symbolic link loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)).lower()
        raise CheckpointError(f"{path}: not a regular file ({what})") from None
    if not stat.S_ISREG(mode):
        kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                 (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
        what = next((name for test, name in kinds if test(mode)), "not a file")
        raise CheckpointError(f"{path}: not a regular file ({what})")
