"""The node's Fast DDS profile (``config/fastdds.xml``), used unless the user chose a profile or another
middleware.

The node publishes bursts of large samples: each plan goes out on ``~/plan``, to the controller and as
action feedback, 200-500 kB each (a 6 s plan of 300-600 points of 29 joints). Fast DDS sends them between
processes on one machine through a shared-memory segment of the writer's participant, 512 kB by
default. A sample that finds no room there is lost, and a reliable writer sends it again only when
its next heartbeat tells the reader what it missed, every 3 s by default. ``moscale bench node`` saw
controller trajectories written on time and received 0.8-2.3 s later (``transport_delay_max_s``) in
7 of 57 runs, and the controller then jumps. The profile gives the node's participant a 16 MB
segment (UDPv4 stays for other machines) and its writers a heartbeat every 0.1 s: none in 22 runs
(largest delay 8.6 ms). The segment is freed when the participant is deleted: at a clean exit of
the node, once its action server is destroyed too (``MoScaleNode.destroy_node``). A process killed
outright leaves its segment in /dev/shm (17 MB with this profile, 0.5 MB with Fast DDS's default) and
its port files; :func:`remove_dead_shared_memory` deletes what dead processes left (the test suite
does at its start).

Setting ``FASTDDS_DEFAULT_PROFILES_FILE`` (or the older ``FASTRTPS_DEFAULT_PROFILES_FILE``) yourself,
even to a profile of your own, or ``RMW_IMPLEMENTATION`` to a middleware other than Fast DDS, leaves
this alone.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import MutableMapping
from pathlib import Path

from moscale_common.paths import resource

PROFILE = "config/fastdds.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
SHARED_MEMORY = Path("/dev/shm")
# Fast DDS's shared-memory files: a segment ``fastdds_<16 hex>`` or a port ``fastdds_port<N>``, each
# with a lock file (suffix ``_el``, or ``_sl``) that its live owner holds locked (flock); a port also
# has a semaphore ``sem.fastdds_port<N>_mutex``.
LOCK_FILE = re.compile(r"^fastdds_(?:[0-9a-f]{16}|port\d{1,5})_(?:el|sl)$")


def use_node_profile(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Point Fast DDS at the node's profile in ``environ`` (default: this process's environment;
    call it before ``rclpy.init``). Returns the profile set, or ``None`` when the user chose a
    profile or another middleware (nothing changed)."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in PROFILE_VARIABLES):
        return None
    if not environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps"):
        return None
    path = resource(PROFILE)
    if not path.is_file():
        return None
    environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return path


def _locked(path: Path) -> bool:
    """Whether a live process holds ``path`` locked (an exclusive non-blocking flock fails)."""
    try:
        with open(path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    return False  # (closing the handle released the lock just taken)


def remove_dead_shared_memory(folder: Path = SHARED_MEMORY) -> int:
    """Delete the Fast DDS segments and ports in ``folder`` whose owner has died (lock file not held),
    with their lock files and semaphores; returns how many segments and ports went. A participant
    being created at that moment could lose its files between their creation and their lock: call
    it when no ROS 2 process is starting (before a test run, say)."""
    removed = 0
    for lock_name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        if not LOCK_FILE.match(lock_name) or _locked(folder / lock_name):
            continue
        name = lock_name[:-3]
        for dead in (name, lock_name, f"sem.{name}_mutex"):
            try:
                (folder / dead).unlink()
            except FileNotFoundError:
                pass
        removed += 1
    return removed
