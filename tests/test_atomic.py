"""Atomic writes: the file appears whole with the usual permissions, or the previous one stays."""
import os
import stat

import pytest

from tfsr.atomic import atomic_path


def test_a_written_file_replaces_the_old_one_with_the_usual_permissions(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    previous = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and tmp != target
            tmp.write_text("new")
            assert target.read_text() == "old"  # nothing replaced before the block ends
    finally:
        os.umask(previous)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # not mkstemp's owner-only 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
