"""The platform's own processes: the API, the CDN edge in front of it, the control worker and transcode workers.

    python -m infra.services up      # start what is not running, wait until each is ready
    python -m infra.services status
    python -m infra.services down

Each process logs to `$VIDPLAT_STATE_DIR/services/<name>.log` and serves Prometheus metrics on its own
port (API 9400, control worker 9401, QoE worker 9402, transcode workers 9403+). `TRANSCODE_WORKERS` sets how many
transcode workers run (default 1: each already uses both cores for its encoder threads).

`API_PROCESSES` (default 2) sets how many API processes serve API_PORT: `api`, then `api-2`, `api-3`, … (metrics on
9410, 9411, …), each binding the port with SO_REUSEPORT so the kernel spreads connections among them. One asyncio
process is one core at most; the telemetry collector needs more on a busy machine (bench/collector_load.py). Their
per-session rate limits and (session, seq) dedupe are per process: a player whose beacons reach two processes
gets up to twice the rate, and a retried beacon may be published again, which the QoE agents dedupe on seq.

The edge is Debian's Varnish (`varnishd -F`, no system daemon) on the address of `EDGE_URL` (127.0.0.1:8081),
with infra/conf/varnish/edge.vcl pointed at the API and its work directory under
`$VIDPLAT_STATE_DIR/services/edge`; an empty `EDGE_URL` runs no edge (and the control worker purges nothing).
Look inside with `varnishadm -n <absolute path of .state/services/edge/varnish> ban.list` (or varnishstat, varnishlog).
Tests build their own `Service` list with another topic prefix and ports, and kill workers at will.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.settings import REPO_ROOT, Settings, load_settings, state_dir
from infra.stack import pid_alive, port_open, resident_mib, tail


class ServiceError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    ready: Callable[[Service], bool]
    home: Path = field(default_factory=lambda: state_dir() / "services")
    timeout_s: float = 120
    # Run before the process is started (not when it already runs): checks and generated files; raises ServiceError.
    prepare: Callable[[Service], None] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.home / f"{self.name}.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self) -> str:
        if self.pid():
            return "already running"
        self.home.mkdir(parents=True, exist_ok=True)
        if self.prepare is not None:
            self.prepare(self)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_path.write_text(str(process.pid))
        self._log_offset = log_offset
        self._process: subprocess.Popen[bytes] | None = process  # kept so the child is reaped when it stops
        return "started"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is None:
                raise ServiceError(
                    f"{self.name} exited at start; last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            if self.ready(self):
                return
            time.sleep(0.5)
        raise ServiceError(f"{self.name} not ready after {self.timeout_s:.0f}s:\n{tail(self.log_path)}")

    def recent_log(self) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(getattr(self, "_log_offset", 0))
            return log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> str:
        pid = self.pid()
        if pid is None:
            self._reap(timeout_s)
            self.pid_path.unlink(missing_ok=True)
            return "not running"
        os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self._reap(timeout_s)
        self.pid_path.unlink(missing_ok=True)
        return "stopped"

    def _reap(self, timeout_s: float) -> None:
        """Collect the exit status of a child we started (killed or exited), so it leaves no zombie."""
        process: subprocess.Popen[bytes] | None = getattr(self, "_process", None)
        if process is not None:
            process.wait(timeout_s)
            self._process = None


def http_ok(url: str) -> Callable[[Service], bool]:
    def check(service: Service) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    return check


def faust_ready(service: Service) -> bool:
    # Faust logs this once the worker has joined its group and its agents are running.
    return "[^Worker]: Ready" in service.recent_log()


FAUST_WORKER = [sys.executable, "-m", "faust", "-A", "processors.app", "worker", "--without-web", "-l", "info"]


def faust_worker(name: str, role: str, metrics_port: int, home: Path, env: dict[str, str]) -> Service:
    """One Faust worker process of `role` (see processors/app.py), with its own RocksDB directory."""
    worker_env = {
        **env,
        "PROCESSOR_ROLE": role,
        "METRICS_PORT": str(metrics_port),
        "FAUST_DATADIR": str(home / f"faust-{name}"),
        "WORK_DIR": str(home / f"work-{name}"),
        # glibc gives each thread that allocates an arena of its own (up to 8 per core); a worker's driver, Kafka
        # and executor threads then leave freed memory spread over many of them, and the resident size grows
        # with it. Two arenas keep the QoE worker's memory near what it holds.
        "MALLOC_ARENA_MAX": env.get("MALLOC_ARENA_MAX", "2"),
    }
    return Service(name, FAUST_WORKER, worker_env, faust_ready, home)


EDGE_VCL = REPO_ROOT / "infra" / "conf" / "varnish" / "edge.vcl"
EDGE_STORAGE = "malloc,256m"


def edge_address(edge_url: str) -> tuple[str, int]:
    """The host and port the local edge listens on: those of EDGE_URL."""
    parts = urllib.parse.urlsplit(edge_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ServiceError(f"EDGE_URL must be http://host:port for the local edge, got {edge_url!r}")
    return parts.hostname, parts.port or 80


def varnishd_binary() -> str | None:
    """varnishd from Debian's varnish package (in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("varnishd") or shutil.which("varnishd", path="/usr/sbin:/usr/local/sbin")


def render_edge_vcl(backend_host: str, backend_port: int) -> str:
    """infra/conf/varnish/edge.vcl with the API's address as its backend."""
    template = EDGE_VCL.read_text()
    return template.replace("{backend_host}", backend_host).replace("{backend_port}", str(backend_port))


def edge_service(settings: Settings, home: Path | None = None, backend_port: int | None = None) -> Service:
    """The CDN edge: Varnish on EDGE_URL's address in front of the API (``backend_port``: the API's port)."""
    home = home or state_dir() / "services"
    host, port = edge_address(settings.edge_url)
    workdir = home / "edge"
    vcl = workdir / "edge.vcl"
    command = [
        varnishd_binary() or "varnishd",
        "-F",  # in the foreground: this Service is the supervisor, not systemd
        "-n",
        str(workdir / "varnish"),
        "-a",
        f"{host}:{port}",
        "-T",
        "127.0.0.1:0",  # the management CLI on a free loopback port (varnishadm -n finds it)
        "-f",
        str(vcl),
        "-s",
        EDGE_STORAGE,
    ]

    def prepare(service: Service) -> None:
        if varnishd_binary() is None:
            raise ServiceError(
                "edge: varnishd not found: the CDN edge is Debian's varnish. "
                "Install it with `apt-get install varnish` (infra/bootstrap.sh does this)."
            )
        if port_open(port, host):
            raise ServiceError(
                f"edge: port {port} ({host}) is in use by another program; stop it or set EDGE_URL to another port"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        vcl.write_text(render_edge_vcl(settings.api_host, backend_port or settings.api_port))

    # Ready once it answers through to the API: the health route passes the edge.
    return Service("edge", command, {}, http_ok(f"http://{host}:{port}/api/v1/health"), home, prepare=prepare)


# The second, third, … API process serve metrics from METRICS_PORT + this up (9410+), clear of the workers' ports.
API_EXTRA_METRICS_OFFSET = 10


def aiohttp_ready(service: Service) -> bool:
    # aiohttp prints this once the site is bound; with SO_REUSEPORT a health request could reach another process.
    return "======== Running on " in service.recent_log()


def api_services(settings: Settings, base: dict[str, str], home: Path) -> list[Service]:
    """``settings.api_processes`` API processes on one port (SO_REUSEPORT when more than one)."""
    count = max(1, settings.api_processes)
    env = {**base, "API_PORT": str(settings.api_port), "API_PROCESSES": str(count)}
    api_url = f"http://{settings.api_host}:{settings.api_port}/api/v1/health"
    command = [sys.executable, "-m", "api"]
    services = [Service("api", command, {**env, "METRICS_PORT": str(settings.metrics_port)}, http_ok(api_url), home)]
    for number in range(2, count + 1):
        metrics = settings.metrics_port + API_EXTRA_METRICS_OFFSET + number - 2
        services.append(Service(f"api-{number}", command, {**env, "METRICS_PORT": str(metrics)}, aiohttp_ready, home))
    return services


def platform_services(settings: Settings, transcode_workers: int, home: Path | None = None) -> list[Service]:
    """The API processes and the workers (the edge is ``edge_service``, started beside them by ``main``)."""
    # EDGE_URL: where the control worker's purges go (processors/cdn_purge.py); empty purges nothing.
    base = {"TOPIC_PREFIX": settings.topic_prefix, "PYTHONUNBUFFERED": "1", "EDGE_URL": settings.edge_url}
    home = home or state_dir() / "services"
    port = settings.metrics_port
    services = [
        *api_services(settings, base, home),
        faust_worker("control-worker", "control", port + 1, home, base),
        faust_worker("qoe-worker", "qoe", port + 2, home, base),
    ]
    services += [
        faust_worker(f"transcode-worker-{index + 1}", "transcode", port + 3 + index, home, base)
        for index in range(transcode_workers)
    ]
    return services


def up(services: list[Service]) -> None:
    for service in services:
        print(f"[services] {service.name}: {service.start()}", flush=True)
    for service in services:
        service.wait_ready()
        print(f"[services] {service.name}: ready (pid {service.pid()})", flush=True)


def down(services: list[Service]) -> None:
    for service in reversed(services):
        print(f"[services] {service.name}: {service.stop()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.services", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    settings = load_settings()
    services = platform_services(settings, int(os.environ.get("TRANSCODE_WORKERS", "1")))
    if settings.edge_url:
        # After the API processes it fronts, so it is stopped before them.
        services.insert(max(1, settings.api_processes), edge_service(settings))
    try:
        if args.command == "up":
            up(services)
        elif args.command == "down":
            down(services)
        else:
            for service in services:
                pid = service.pid()
                rss = resident_mib(pid) if pid else None
                state = f"running pid={pid} {rss:.0f} MiB RSS" if pid and rss else "stopped"
                print(f"{service.name:<20} {state}")
    except ServiceError as exc:
        print(f"[services] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
