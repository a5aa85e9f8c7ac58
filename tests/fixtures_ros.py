"""ROS 2 test environment: every test run gets its own domain, localhost discovery, a temp log dir."""

from __future__ import annotations

import os
import random
import tempfile

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 210)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="moscale-roslog-"))
