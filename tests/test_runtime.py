"""moscale_ros.runtime: the thread count is scoped, never leaked."""

from __future__ import annotations

import os

import pytest
import torch

from moscale_ros.runtime import set_num_threads, torch_threads


def test_torch_threads_sets_then_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1) as inside:
        assert inside == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_torch_threads_zero_keeps_count_but_still_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(0) as inside:
        assert inside == before
        torch.set_num_threads(1)  # something inside changes it
    assert torch.get_num_threads() == before


def test_torch_threads_restores_after_an_exception() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_set_num_threads_caps_at_the_machine() -> None:
    before = torch.get_num_threads()
    try:
        assert set_num_threads(10_000) == (os.cpu_count() or 1)
        assert set_num_threads(-3) == 1
    finally:
        torch.set_num_threads(before)
