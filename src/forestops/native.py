"""Small C files of forestops' own, compiled once per process with the system compiler.

Why at run time and not at install: the kernels use `-march=native` (the vector width of the host
they run on), and a wheel per machine is not a thing; the images carry a compiler anyway (for
the compiled forest). Compiling one of these takes about a second of CPU, once per process and
compiler; where there is no compiler the caller falls back to what it did before.
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
import threading
from functools import cache
from pathlib import Path

_FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
_compiling = threading.Lock()


class CompilerFailed(RuntimeError):
    """The compiler did not run, or exited non-zero; the message names it and its error line."""


class KernelUnavailable(RuntimeError):
    """No kernel here: no compiler, or it failed; the message says which."""


def run_compiler(compiler: str, arguments: list[str], timeout_s: float | None = None) -> None:
    """`compiler arguments...`, raising CompilerFailed with the one line worth reading (its first
    error, else its last line) rather than pages of notes: every C build of forestops' reports a
    failure this way, and the line ends up in a runtime note or a log line."""
    try:
        done = subprocess.run([compiler, *arguments], capture_output=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise CompilerFailed(f"{compiler} did not run: {error}") from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        worth = next((line for line in lines if "error:" in line), lines[-1])
        raise CompilerFailed(f"{compiler} exited {done.returncode}: {worth.strip()}")


def compiled(source: Path, compiler: str = "cc") -> ctypes.CDLL:
    """`source` compiled with `compiler` and loaded, built on the first call in this process."""
    with _compiling:
        return _compiled(source, compiler)


@cache
def _compiled(source: Path, compiler: str) -> ctypes.CDLL:
    with tempfile.TemporaryDirectory() as scratch:
        library = Path(scratch) / f"{source.stem}.so"
        try:
            run_compiler(compiler, [*_FLAGS, str(source), "-o", str(library), "-lm"], 120)
        except CompilerFailed as error:
            raise KernelUnavailable(str(error)) from None
        return ctypes.CDLL(str(library))  # mapped: the file may go with the directory
