"""`write_atomically`: the one way state files and archived payloads are replaced."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from forestops.files import write_atomically


def test_text_and_bytes_replace_the_file_and_leave_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "state.json"
    write_atomically(target, "año 1")
    assert target.read_text(encoding="utf-8") == "año 1"
    write_atomically(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_previous_content_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, "before")
    with pytest.raises(TypeError):
        write_atomically(target, 42)  # type: ignore[arg-type]  # fails inside the write
    assert target.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_concurrent_writers_never_leave_a_mixed_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    bodies = [str(n) * 50_000 for n in range(8)]
    threads = [
        threading.Thread(target=lambda b=body: [write_atomically(target, b) for _ in range(20)])
        for body in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in bodies
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
