"""Fixtures of the batch-job tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for one test module (started once: Ray takes seconds to start)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()
