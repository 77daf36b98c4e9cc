"""Start the plan in `depends_on` order, print one JSON line of endpoints, run until signalled.

Order and readiness follow compose's own rules: a service starts once each dependency is
started (`service_started`), healthy by its healthcheck (`service_healthy`) or, for a one-shot
job, exited with 0 (`service_completed_successfully`); a failed job stops the run with its
output. Every process is a `Child` (its own process group, killed with the harness even on
SIGKILL, output relayed to stderr), so Ctrl-C or SIGTERM leaves nothing behind. A long-running
service that exits ends the run too: a stack with a dead part must not look healthy.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from forestops.fullstack import local
from forestops.fullstack.backing import Backing
from forestops.fullstack.compose import DEPLOY
from forestops.fullstack.plan import Plan, Process
from forestops.orchestration.supervisor import Child

log = logging.getLogger("forestops.fullstack")

STARTUP_TIMEOUT_S = 600.0
HEALTH_COMMAND_INTERVAL_S = 5.0
_UPSTREAM = re.compile(r"server\s+(?P<host>[\w-]+):(?P<port>\d+)\s+resolve\s*(?P<params>[^;]*);")


class StackFailed(RuntimeError):
    """A job failed, a service died or never became healthy: the message says which and why."""


class Runner:
    def __init__(self, plan: Plan, compose: dict[str, Any], backing: Backing, run_dir: Path):
        self.plan = plan
        self.compose = compose
        self.backing = backing
        self.run_dir = run_dir
        self.children: dict[str, Child] = {}
        self.exit_codes: dict[str, int] = {}
        self.healthy: set[str] = set()
        self._last_check: dict[str, float] = {}
        self.stopping = threading.Event()

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        pending = list(self.plan.processes)
        while pending or not self._all_up():
            if self.stopping.is_set():
                raise StackFailed("stopped while starting")
            if time.monotonic() > deadline:
                waiting = [p.name for p in self.plan.processes if not self._up(p)]
                raise StackFailed(f"not up within {STARTUP_TIMEOUT_S:.0f} s: {waiting}")
            for process in [p for p in pending if self._ready_to_start(p)]:
                self._launch(process)
                pending.remove(process)
            self._poll()
            time.sleep(0.5)

    def _ready_to_start(self, process: Process) -> bool:
        for dependency, condition in process.depends_on.items():
            members = [p for p in self.plan.processes if p.service == dependency]
            if not members:
                continue  # provided by this machine (databases, Redis, S3, minio-init's buckets)
            if condition == "service_completed_successfully":
                ok = all(self.exit_codes.get(p.name) == 0 for p in members)
            elif condition == "service_healthy":
                ok = all(p.name in self.healthy for p in members)
            else:
                ok = all(p.name in self.children for p in members)
            if not ok:
                return False
        return True

    def _launch(self, process: Process) -> None:
        if process.argv[0] == local.NGINX:
            self._write_nginx_config(process)
        for folder in (process.env.get("HOME"), process.cwd):
            if folder:
                Path(folder).mkdir(parents=True, exist_ok=True)
        log.info("starting %s", process.name)
        child = Child(
            process.name,
            process.argv,
            process.env,
            inherit_env=False,
            tail_lines=80,
            cwd=process.cwd,
        )
        self.children[process.name] = child.start()

    def _poll(self) -> None:
        for process in self.plan.processes:
            child = self.children.get(process.name)
            if child is None or process.name in self.exit_codes:
                continue
            code = child.poll()
            if code is not None:
                child.wait()
                self.exit_codes[process.name] = code
                if not process.one_shot or code != 0:
                    tail = "\n".join(child.tail)
                    raise StackFailed(f"{process.name} exited with {code}:\n{tail}")
                log.info("%s done", process.name)
                continue
            if not process.one_shot and process.name not in self.healthy and self._check(process):
                log.info("%s is healthy", process.name)
                self.healthy.add(process.name)

    def _check(self, process: Process) -> bool:
        if process.health_url:
            try:
                status = httpx.get(process.health_url, timeout=5).status_code
            except httpx.HTTPError:
                return False
            return status in process.healthy_statuses
        if process.health_command:
            now = time.monotonic()
            if now - self._last_check.get(process.name, 0.0) < HEALTH_COMMAND_INTERVAL_S:
                return False
            self._last_check[process.name] = now
            command = [
                word.replace("${HOSTNAME}", socket.gethostname()) for word in process.health_command
            ]
            env = {**process.env, "HOSTNAME": socket.gethostname()}
            try:
                done = subprocess.run(command, env=env, capture_output=True, timeout=90)
            except subprocess.TimeoutExpired:
                return False
            return done.returncode == 0
        return True  # no healthcheck: started is healthy, as in compose

    def _up(self, process: Process) -> bool:
        if process.one_shot:
            return self.exit_codes.get(process.name) == 0
        return process.name in self.healthy

    def _all_up(self) -> bool:
        return all(self._up(p) for p in self.plan.processes)

    # --- the load balancer ---------------------------------------------------------------------
    def _write_nginx_config(self, process: Process) -> None:
        """The compose file's template, filled in as the nginx image does, for this host.

        Debian's nginx (1.22) has no `resolve` for upstream servers (nginx 1.27.3 and later do):
        the replicas are listed one by one instead, with the same parameters.
        """
        service = self.compose["services"][process.service]
        raw_env = service["environment"]
        volumes = {str(v).split(":")[1]: str(v).split(":")[0] for v in service["volumes"]}
        template = (DEPLOY / volumes["/etc/nginx/templates/default.conf.template"]).read_text()
        upstreams = _UPSTREAM.sub(
            lambda m: " ".join(
                f"server 127.0.0.1:{replica[int(m['port'])]} {m['params'].strip()};"
                for replica in self.plan.ports[m["host"]]
            ),
            raw_env["INFERENCE_UPSTREAM_SERVERS"],
        )
        values = {
            "INFERENCE_UPSTREAM_SERVERS": upstreams,
            "NGINX_RESOLVER": "127.0.0.1",  # never asked: no server name needs resolving here
            "LB_TLS_DIR": str(self.run_dir / "tls"),
        }
        for name, value in values.items():
            template = template.replace("${" + name + "}", value)
        for container_port, local_port in process.ports.items():
            template = re.sub(
                rf"listen {container_port}\b", f"listen 127.0.0.1:{local_port}", template
            )
        home = Path(process.argv[process.argv.index("-p") + 1])
        home.mkdir(parents=True, exist_ok=True)
        (home / "default.conf").write_text(template)
        (home / "nginx.conf").write_text(local.NGINX_MAIN.format(run=home))

    # --- run and stop --------------------------------------------------------------------------
    def supervise(self) -> None:
        while not self.stopping.wait(1.0):
            self._poll()

    def stop(self) -> None:
        for name in reversed(list(self.children)):
            child = self.children[name]
            if child.poll() is None:
                log.info("stopping %s", name)
                child.terminate()
        for child in self.children.values():
            if child.poll() is None:
                child.stop(timeout=30)


class WebhookReceiver:
    """The Slack-compatible webhook of the stack: each POSTed body becomes one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", errors="replace")
                try:
                    payload: Any = json.loads(body)
                except ValueError:
                    payload = body
                line = json.dumps({"received_at": time.time(), "path": self.path, "body": payload})
                with lock, path.open("a") as out:
                    out.write(line + "\n")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def install_signal_handlers(runner: Runner) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping the stack", signal.Signals(signum).name)
        runner.stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handle)


def emit(endpoints: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(endpoints) + "\n")
    sys.stdout.flush()
