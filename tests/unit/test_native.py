"""How forestops' C builds report a compiler's failure: one line naming the compiler and its first
error, whatever is built (the TreeSHAP kernel, the forest walk, a compiled forest's units)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forestops.native import CompilerFailed, run_compiler


def test_a_compile_error_is_reported_by_its_error_line(tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("int f(void) { return undeclared_name; }\n")
    with pytest.raises(CompilerFailed) as raised:
        run_compiler("cc", ["-c", str(source), "-o", str(tmp_path / "broken.o")])
    message = str(raised.value)
    assert message.startswith("cc exited 1: ")
    assert "undeclared_name" in message  # the error, not the note gcc prints after it
    assert "\n" not in message


def test_a_missing_compiler_is_named(tmp_path: Path) -> None:
    with pytest.raises(CompilerFailed, match=r"^/nonexistent/cc did not run: "):
        run_compiler("/nonexistent/cc", ["--version"])


def test_a_good_build_leaves_its_output(tmp_path: Path) -> None:
    source = tmp_path / "fine.c"
    source.write_text("int f(void) { return 1; }\n")
    run_compiler("cc", ["-c", str(source), "-o", str(tmp_path / "fine.o")])
    assert (tmp_path / "fine.o").stat().st_size > 0
