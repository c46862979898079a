"""What the CLI's tests share: a database holding a run with kept rationales to export."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_seed import seed


@pytest.fixture
def kept_db(tmp_path) -> Path:
    db = tmp_path / "kept.duckdb"
    seed(db)  # its right-and-verified rationales are marked as kept
    return db
