"""ROS 2 test environment: every test run gets its own domain, localhost discovery, a temp log dir."""

from __future__ import annotations

import os
import random
import tempfile
import time
from contextlib import contextmanager

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 210)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
if not os.environ.get("ROS_LOG_DIR"):  # (scripts/test.sh sets one; setdefault would make a folder anyway)
    os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="moscale-roslog-")


def pytest_sessionstart(session) -> None:
    """Fast DDS shared memory left by processes that died in earlier runs (killed nodes and clients:
    17 MB each with the node's profile) is removed before any participant of this run starts; the
    machine running CI keeps its /dev/shm between runs."""
    from moscale_ros.node.transport import remove_dead_shared_memory

    removed = remove_dead_shared_memory()
    if removed:
        print(f"\nfixtures_ros: removed {removed} Fast DDS shared-memory segments and ports of dead processes")


# ---- node fixtures (owned with moscale_ros/node; see tests/test_node*.py) ----------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# A standing person in the canonical frame (y up, facing +z, left = +x), metres: the untrained
# test model's feature mean, so its random outputs stay around a plausible human pose.
STANDING_POSE_223 = np.array(
    [[0, 0.93, 0], [0.09, 0.87, 0], [-0.09, 0.87, 0], [0, 1.04, -0.01], [0.10, 0.50, 0.01], [-0.10, 0.50, 0.01],
     [0, 1.17, 0], [0.10, 0.08, -0.03], [-0.10, 0.08, -0.03], [0, 1.22, 0.01], [0.11, 0.02, 0.10],
     [-0.11, 0.02, 0.10], [0, 1.44, -0.01], [0.07, 1.35, 0], [-0.07, 1.35, 0], [0, 1.58, 0.03],
     [0.18, 1.38, -0.01], [-0.18, 1.38, -0.01], [0.22, 1.12, -0.02], [-0.22, 1.12, -0.02],
     [0.24, 0.87, 0.02], [-0.24, 0.87, 0.02]],
    dtype=np.float32,
)  # fmt: skip


def write_untrained_generator(path) -> str:
    """A small randomly initialised generator checkpoint (real tokenizer and transformer classes,
    real MiniLM text encoder config), saved with the project's checkpoint format."""
    import torch

    from moscale_ros.data.features import joints_to_features
    from moscale_ros.generation.bundle import save_generator
    from moscale_ros.generation.config import GenerationConfig
    from moscale_ros.models.text_encoder import TextEncoderConfig
    from moscale_ros.models.tokenizer import MotionTokenizer, TokenizerConfig
    from moscale_ros.models.transformer import NextScaleTransformer, TransformerConfig

    torch.manual_seed(0)
    feats_TD = joints_to_features(np.repeat(STANDING_POSE_223[None], 4, axis=0))
    mean_D = torch.tensor(feats_TD.mean(0), dtype=torch.float32)
    std_D = torch.full_like(mean_D, 0.05)
    tokenizer = MotionTokenizer(TokenizerConfig(width=32, depth=1, code_dim=16, codebook_size=64))
    transformer = NextScaleTransformer(
        TransformerConfig(width=64, depth=2, num_heads=2, codebook_size=64, code_dim=16, text_dim=384, max_latents=64)
    )
    save_generator(path, tokenizer, transformer, None, mean_D, std_D, TextEncoderConfig(), GenerationConfig())
    return str(path)


@pytest.fixture(scope="session")
def untrained_generator(tmp_path_factory) -> str:
    """Path of a small untrained generator checkpoint (the node can run with any generator)."""
    return write_untrained_generator(tmp_path_factory.mktemp("models") / "untrained-generator.safetensors")


@pytest.fixture(scope="session")
def ros():
    """One rclpy context for the whole test process (rclpy.init may run only once at a time)."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


def wait_until(condition, timeout: float, poll_s: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` s pass (its last value)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return bool(condition())


def call_service(service, request, timeout: float = 60.0, resend_after: float = 5.0):
    """The answer of ``service`` (an rclpy client whose node is spun elsewhere) to ``request``.

    ``wait_for_service`` sees the request side only: a request sent before the server has matched
    this client's response reader goes unanswered. An unanswered request is therefore sent again
    every ``resend_after`` s, so ``request`` must be idempotent (a get, or setting a value)."""
    deadline = time.monotonic() + timeout
    assert service.wait_for_service(timeout_sec=timeout), f"{service.srv_name} not available"
    while time.monotonic() < deadline:
        future = service.call_async(request)
        resend_at = min(deadline, time.monotonic() + resend_after)
        while not future.done() and time.monotonic() < resend_at:
            time.sleep(0.01)
        if future.done():
            return future.result()
        service.remove_pending_request(future)
    raise AssertionError(f"no answer from {service.srv_name} within {timeout} s")


@contextmanager
def node_process(settings: dict, log_path, **options):
    """A ``moscale_node`` process (``NodeProcess(settings, log_path=..., **options)``) for the block;
    at the end it must exit with code 0 and no traceback."""
    # Imported on use: test modules that never start a node do not load the node package
    from moscale_ros.node.launcher import NodeProcess

    process = NodeProcess(settings, log_path=log_path, **options).start()
    yield process
    code = process.stop()
    assert code == 0, f"moscale_node exited with {code}:\n{process.log()[-3000:]}"
    assert "Traceback" not in process.log(), process.log()[-3000:]


@contextmanager
def ready_client(process, node_name: str = "/moscale_node", *args):
    """A MoScaleClient of ``node_name`` (further arguments: its controller topic), ready for the block."""
    # Imported on use: rclpy's message packages load only where a client is made
    from moscale_ros.node.client import MoScaleClient

    client = MoScaleClient(node_name, *args)
    try:
        assert client.wait_ready(120.0), f"moscale_node not ready:\n{process.log()[-3000:]}"
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def moscale_node(untrained_generator, tmp_path_factory):
    """The node as users start it, ``moscale node --params-file config/moscale.yaml``, with the
    untrained generator as its checkpoint; at the end it must exit cleanly, without a traceback."""
    log = tmp_path_factory.mktemp("moscale_node") / "moscale_node.log"
    with node_process({"checkpoint": untrained_generator}, log, entry="cli") as process:
        yield process


@pytest.fixture(scope="session")
def moscale_client(ros, moscale_node):
    """A client of the shared node, ready (action server, command subscription, plan publisher)."""
    with ready_client(moscale_node) as client:
        yield client
