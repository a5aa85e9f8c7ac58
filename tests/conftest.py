"""Shared test fixtures: the data fixtures (real Bandai clips) and the ROS 2 fixtures live in
their own modules next to this file."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["fixtures_data", "fixtures_ros"]
