"""Every test runs without the result cache (a second run of a test must analyse again), except
the cache's own tests, which turn it back on."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_result_cache(monkeypatch):
    monkeypatch.setenv("LORA_CODEMOD_NO_CACHE", "1")
