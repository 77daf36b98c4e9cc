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


class KernelUnavailable(RuntimeError):
    """No kernel here: no compiler, or it failed; the message says which."""


def compiled(source: Path, compiler: str = "cc") -> ctypes.CDLL:
    """`source` compiled with `compiler` and loaded, built on the first call in this process."""
    with _compiling:
        return _compiled(source, compiler)


@cache
def _compiled(source: Path, compiler: str) -> ctypes.CDLL:
    with tempfile.TemporaryDirectory() as scratch:
        library = Path(scratch) / f"{source.stem}.so"
        command = [compiler, *_FLAGS, str(source), "-o", str(library), "-lm"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise KernelUnavailable(f"{compiler} did not run: {error}") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise KernelUnavailable(f"{compiler} exited {done.returncode}: {tail[0]}")
        return ctypes.CDLL(str(library))  # mapped: the file may go with the directory
