"""What the store's tests share: a store with a finished run's attempts, ready to audit (audit_seed.py)."""

from __future__ import annotations

import pytest

from audit_seed import seed


@pytest.fixture
def seeded(tmp_path):
    """(store, run_id) of a constructed run whose kept rationales can be audited."""
    return seed(tmp_path / "audit.duckdb")
