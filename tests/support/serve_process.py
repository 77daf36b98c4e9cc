"""`forestops serve` as a user starts it, in its own process, for tests that attack it.

Its output goes to a file the test can read (what the service logged), and its memory is read
from /proc: `memory_kb("VmRSS")` now, `memory_kb("VmHWM")` the peak since `reset_peak()`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from forestops.webserver import free_port
from support.forestops_up import FORESTOPS

_INHERITED_NOT = ("FORESTOPS_", "MLFLOW_", "DATABASE_URL", "API_KEYS", "ADMIN_API_KEY", "UI_API")


class ServeProcess:
    def __init__(self, env: dict[str, str], workdir: Path, *, ready_status: int = 200) -> None:
        """`env` on top of this shell's environment minus its forestops/MLflow settings;
        started in `workdir` (no developer's `.env` is read); ready once /health answers
        `ready_status`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "serve.log"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_NOT)}
        self._env.update(env)
        self._ready_status = ready_status
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> ServeProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [FORESTOPS, "serve", "--port", str(self.port)],
                env=self._env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while True:
            assert self._process.poll() is None, f"forestops serve exited: {self.log()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == self._ready_status:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in 180 s: {self.log()[-3000:]}"
            time.sleep(0.5)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def memory_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
        raise KeyError(field)

    def reset_peak(self) -> None:
        """Start VmHWM afresh from the current RSS (Linux: `5` to clear_refs)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
