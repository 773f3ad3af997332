"""The local stack: Kafka (KRaft), Cassandra and S3Proxy, fetched from Maven Central and run on 127.0.0.1.

    python -m infra.stack up       # fetch what is missing, start what is not running, wait for health
    python -m infra.stack status   # one line per server: state, pid, port, resident memory
    python -m infra.stack down     # stop every server; no process is left behind
    python -m infra.stack reset    # down, then wipe data and logs (the jar cache is kept)

No Docker: each server is a plain JVM started from its own lib directory (their Jackson/Netty/logging
versions clash, so they never share a classpath). Jars are resolved by Maven from the small poms in
infra/maven/ and cached under $VIDPLAT_CACHE_DIR (default ~/.cache/vidplat), outside the source tree.
Data, logs and pid files live under $VIDPLAT_STATE_DIR (default <repo>/.state, ignored by git).

`up` is idempotent: a server that answers its health check is left alone. Every failure names its cause
(no Java 17, no Maven, a port taken by another program, a failed fetch, a server that died at start,
with the tail of its log).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.settings import REPO_ROOT, Settings, load_settings, state_dir

KAFKA_VERSION = "4.3.1"
CASSANDRA_VERSION = "5.0.9"
S3PROXY_VERSION = "2.9.0"

MAVEN_DIR = REPO_ROOT / "infra" / "maven"
CONF_DIR = REPO_ROOT / "infra" / "conf"
# Every JVM we start carries this property so `down` can find strays even if a pid file is lost.
OWNER_PROPERTY = "-Dvidplat.stack="


class StackError(RuntimeError):
    """A failure a person can act on; the message names the missing piece."""


def cache_dir() -> Path:
    return Path(os.environ.get("VIDPLAT_CACHE_DIR", Path.home() / ".cache" / "vidplat"))


def log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


# --------------------------------------------------------------------------------------------------
# Prerequisites


def find_java17() -> Path:
    """Cassandra 5.0 runs on Java 11 or 17 only; the Temurin 25 JDK beside it cannot run it."""
    candidates: list[Path] = []
    if os.environ.get("JAVA17_HOME"):
        candidates.append(Path(os.environ["JAVA17_HOME"]) / "bin" / "java")
    candidates += sorted(Path("/usr/lib/jvm").glob("*17*/bin/java"))
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java") or "java"))
    for java in candidates:
        if java.exists() and java_major_version(java) == 17:
            return java
    raise StackError(
        "no Java 17 found: Cassandra 5.0 needs Java 17 (Java 25 cannot run it). "
        "Install it with `apt-get install openjdk-17-jre-headless` or set JAVA17_HOME."
    )


def java_major_version(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    for token in out.split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head.isdigit():
                return int(head)
    return None


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven (mvn) not found: it fetches the servers' jars from Maven Central. "
            "Install it with `apt-get install maven` (infra/bootstrap.sh does this)."
        )
    return mvn


# --------------------------------------------------------------------------------------------------
# Fetching jars


def pom_digest(server: str) -> str:
    return hashlib.sha256((MAVEN_DIR / server / "pom.xml").read_bytes()).hexdigest()[:16]


def lib_dir(server: str) -> Path:
    return cache_dir() / "lib" / f"{server}-{pom_digest(server)}"


def fetch(server: str) -> Path:
    """Resolve the server's jars with maven-dependency-plugin into a cache dir keyed by its pom."""
    target = lib_dir(server)
    if (target / ".complete").exists():
        return target
    mvn = require_maven()
    log(f"fetching {server} jars from Maven Central …")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(MAVEN_DIR / server / "pom.xml"),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        f"-DoutputDirectory={partial}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise StackError(f"fetching {server} jars from Maven Central failed (mvn exit {result.returncode}):\n{tail}")
    (partial / ".complete").write_text(pom_digest(server))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


# --------------------------------------------------------------------------------------------------
# Process bookkeeping


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def resident_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def stray_pids(marker: str) -> list[int]:
    """Processes whose command line carries our owner marker (e.g. a server whose pid file was lost)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------
# Servers

# The servers this process started, for as long as it runs: they outlive it by design, and holding their
# handles keeps Python from warning about a child it forgot (a test restarts Cassandra in-process).
STARTED_HERE: list[subprocess.Popen[bytes]] = []


@dataclass
class Server:
    name: str
    ports: dict[str, int]
    heap: str
    main_class: str
    health_timeout_s: float
    healthy: Callable[[Server], bool]
    prepare: Callable[[Server, Path], list[str]]
    after_start: Callable[[Server], None] = field(default=lambda server: None)

    @property
    def home(self) -> Path:
        return state_dir() / self.name

    @property
    def pid_file(self) -> Path:
        return self.home / "pid"

    @property
    def console_log(self) -> Path:
        return self.home / "logs" / "console.log"

    @property
    def marker(self) -> str:
        return f"{OWNER_PROPERTY}{state_dir()}/{self.name}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_healthy(self) -> bool:
        try:
            return self.healthy(self)
        except Exception:  # noqa: BLE001 - any failure of a probe means "not healthy yet"
            return False

    def start(self, java: Path) -> str:
        """Start unless already healthy; returns what was done."""
        pid = self.pid()
        if pid and self.is_healthy():
            return "already running"
        if not pid:
            for label, port in self.ports.items():
                if port_open(port):
                    raise StackError(
                        f"{self.name}: port {port} ({label}) is in use by another program; "
                        f"stop it or point the platform at another port"
                    )
            jars = fetch(self.name)
            (self.home / "logs").mkdir(parents=True, exist_ok=True)
            (self.home / "data").mkdir(parents=True, exist_ok=True)
            args = self.prepare(self, jars)
            cmd = [str(java), f"-Xms{self.heap}", f"-Xmx{self.heap}", self.marker, *args]
            cmd += ["-cp", f"{jars}/*", self.main_class, *self.main_args()]
            with self.console_log.open("ab") as console:
                proc = subprocess.Popen(
                    cmd,
                    cwd=self.home,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # survives the shell that ran `up`
                )
            self.pid_file.write_text(str(proc.pid))
            STARTED_HERE.append(proc)
            pid = proc.pid
            log(f"{self.name}: started pid {pid}, waiting for health …")
        deadline = time.monotonic() + self.health_timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                raise StackError(
                    f"{self.name} died at start; last lines of {self.console_log} and its log:\n"
                    f"{tail(self.console_log)}\n{tail(self.server_log())}"
                )
            if self.is_healthy():
                self.after_start(self)
                return "started"
            time.sleep(1)
        raise StackError(
            f"{self.name} did not become healthy within {self.health_timeout_s:.0f}s; "
            f"last lines of its log:\n{tail(self.server_log())}"
        )

    def main_args(self) -> list[str]:
        return MAIN_ARGS[self.name](self)

    def server_log(self) -> Path:
        return self.home / "logs" / "server.log"

    def stop(self) -> str:
        pids = set(stray_pids(self.marker))
        if (pid := self.pid()) is not None:
            pids.add(pid)
        if not pids:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.5)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return "stopped"


# --- Kafka ----------------------------------------------------------------------------------------


def kafka_prepare(server: Server, jars: Path) -> list[str]:
    data = server.home / "data"
    props = server.home / "server.properties"
    broker, controller = server.ports["broker"], server.ports["controller"]
    props.write_text(
        "\n".join(
            [
                "# Generated by infra/stack.py: one combined broker+controller in KRaft mode.",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                # A single broker: internal topics cannot be replicated.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                # Topics come from topics.yaml via the reconciler, never from a typo in a producer.
                "auto.create.topics.enable=false",
                "group.initial.rebalance.delay.ms=0",
                "num.partitions=1",
                "",
            ]
        )
    )
    if not (data / "meta.properties").exists():
        # Storage is formatted exactly once; the cluster id is kept for the life of the data dir.
        cluster_id_file = server.home / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(kafka_cluster_id())
        java = find_java17()
        result = subprocess.run(
            [
                str(java),
                "-cp",
                f"{jars}/*",
                f"-Dlog4j2.configurationFile={CONF_DIR / 'kafka-log4j2.yaml'}",
                f"-Dkafka.logs.dir={server.home / 'logs'}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id_file.read_text().strip(),
                "-c",
                str(props),
                "--standalone",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")
    return [
        f"-Dlog4j2.configurationFile={CONF_DIR / 'kafka-log4j2.yaml'}",
        f"-Dkafka.logs.dir={server.home / 'logs'}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
    ]


def kafka_cluster_id() -> str:
    """Kafka's cluster id format: a random UUID as url-safe base64 without padding (22 chars)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def kafka_healthy(server: Server) -> bool:
    if not port_open(server.ports["broker"]):
        return False
    log_file = server.server_log()
    return log_file.exists() and "Kafka Server started" in log_file.read_text(errors="replace")


# --- Cassandra ------------------------------------------------------------------------------------


def cassandra_prepare(server: Server, jars: Path) -> list[str]:
    home = server.home
    data = home / "data"
    for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    template = (CONF_DIR / "cassandra.yaml").read_text()
    (home / "cassandra.yaml").write_text(
        template.format(
            data=data,
            cql_port=server.ports["cql"],
            storage_port=server.ports["storage"],
        )
    )
    (home / "logback.xml").write_text(
        (CONF_DIR / "cassandra-logback.xml").read_text().replace("{log_file}", str(server.server_log()))
    )
    jamm = next(jars.glob("jamm-*.jar"), None)
    if jamm is None:
        raise StackError(f"cassandra: jamm agent jar missing from {jars}; run `reset` and `up` again")
    jvm_options = [
        line.strip()
        for line in (CONF_DIR / "cassandra-jvm17-server.options").read_text().splitlines()
        if line.strip().startswith("-")
    ]
    return [
        *jvm_options,
        "-Xss512k",
        f"-javaagent:{jamm}",
        f"-Dcassandra.config=file://{home / 'cassandra.yaml'}",
        f"-Dlogback.configurationFile={home / 'logback.xml'}",
        f"-Dcassandra.storagedir={data}",
        f"-Dcassandra.logdir={home / 'logs'}",
        f"-Dcassandra.jmx.local.port={server.ports['jmx']}",
        "-Dcassandra-foreground=yes",
        # A single local node: skip the ring-settling waits that only matter with peers.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.ring_delay_ms=0",
    ]


def cassandra_healthy(server: Server) -> bool:
    if not port_open(server.ports["cql"]):
        return False
    log_file = server.server_log()
    return log_file.exists() and "Startup complete" in log_file.read_text(errors="replace")


# --- S3Proxy --------------------------------------------------------------------------------------


def s3proxy_prepare(server: Server, jars: Path) -> list[str]:
    settings = load_settings().storage
    blobs = server.home / "data" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (server.home / "s3proxy.properties").write_text(
        "\n".join(
            [
                f"s3proxy.endpoint=http://127.0.0.1:{server.ports['http']}",
                "s3proxy.authorization=aws-v2-or-v4",
                f"s3proxy.identity={settings.access_key}",
                f"s3proxy.credential={settings.secret_key}",
                # Browsers upload straight to presigned URLs, so the web app's origin needs CORS.
                "s3proxy.cors-allow-all=true",
                "jclouds.provider=filesystem",
                f"jclouds.filesystem.basedir={blobs}",
                "",
            ]
        )
    )
    (server.home / "logback.xml").write_text(
        (CONF_DIR / "s3proxy-logback.xml").read_text().replace("{log_file}", str(server.server_log()))
    )
    return [f"-Dlogback.configurationFile={server.home / 'logback.xml'}"]


def s3proxy_healthy(server: Server) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{server.ports['http']}/", timeout=2)
    except urllib.error.HTTPError:
        return True  # an S3 error document (403 without credentials) means it is serving
    except OSError:
        return False
    return True


def create_buckets(server: Server) -> None:
    from common.storage import ensure_buckets  # the S3 client needs the venv, not the servers

    ensure_buckets()


MAIN_ARGS: dict[str, Callable[[Server], list[str]]] = {
    "kafka": lambda server: [str(server.home / "server.properties")],
    "cassandra": lambda server: [],
    "s3proxy": lambda server: ["--properties", str(server.home / "s3proxy.properties")],
}


def host_port(address: str, default_port: int) -> int:
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else default_port


def servers(settings: Settings) -> list[Server]:
    kafka_port = host_port(settings.kafka.bootstrap_servers.split(",")[0], 9092)
    return [
        Server(
            name="kafka",
            ports={"broker": kafka_port, "controller": kafka_port + 1},
            heap=os.environ.get("KAFKA_HEAP", "512m"),
            main_class="kafka.Kafka",
            health_timeout_s=120,
            healthy=kafka_healthy,
            prepare=kafka_prepare,
        ),
        Server(
            name="cassandra",
            ports={
                "cql": settings.cassandra.port,
                "storage": int(os.environ.get("CASSANDRA_STORAGE_PORT", 7000)),
                "jmx": int(os.environ.get("CASSANDRA_JMX_PORT", 7199)),
            },
            heap=os.environ.get("CASSANDRA_HEAP", "1g"),
            main_class="org.apache.cassandra.service.CassandraDaemon",
            health_timeout_s=240,
            healthy=cassandra_healthy,
            prepare=cassandra_prepare,
        ),
        Server(
            name="s3proxy",
            ports={"http": host_port(settings.storage.endpoint, 9000)},
            heap=os.environ.get("S3PROXY_HEAP", "256m"),
            main_class="org.gaul.s3proxy.Main",
            health_timeout_s=60,
            healthy=s3proxy_healthy,
            prepare=s3proxy_prepare,
            after_start=create_buckets,
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Commands


def status_lines(stack: list[Server]) -> list[str]:
    lines = []
    for server in stack:
        pid = server.pid()
        ports = ",".join(f"{label}={port}" for label, port in server.ports.items())
        if pid is None:
            lines.append(f"{server.name:<10} stopped              {ports}")
            continue
        state = "healthy" if server.is_healthy() else "starting/unhealthy"
        rss = resident_mib(pid)
        memory = f"{rss:.0f} MiB RSS" if rss is not None else "?"
        lines.append(f"{server.name:<10} {state:<20} pid={pid} {ports} {memory}")
    return lines


def command_up(stack: list[Server]) -> int:
    java = find_java17()
    began = time.monotonic()
    # Fetch everything first so a missing jar fails before any server is started.
    for server in stack:
        fetch(server.name)
    for server in stack:
        outcome = server.start(java)
        log(f"{server.name}: {outcome}")
    log(f"stack healthy in {time.monotonic() - began:.1f}s")
    for line in status_lines(stack):
        print(line)
    return 0


def command_down(stack: list[Server]) -> int:
    for server in reversed(stack):
        log(f"{server.name}: {server.stop()}")
    left = [pid for server in stack for pid in stray_pids(server.marker)]
    if left:
        raise StackError(f"processes still running after down: {left}")
    return 0


def command_reset(stack: list[Server]) -> int:
    command_down(stack)
    target = state_dir()
    for server in stack:
        shutil.rmtree(target / server.name, ignore_errors=True)
    log(f"wiped data and logs under {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "status", "down", "reset", "fetch"])
    parser.add_argument("--only", help="comma-separated subset: kafka,cassandra,s3proxy")
    args = parser.parse_args(argv)
    stack = servers(load_settings())
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {server.name for server in stack}
        if unknown:
            parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
        stack = [server for server in stack if server.name in wanted]
    try:
        if args.command == "up":
            return command_up(stack)
        if args.command == "status":
            for line in status_lines(stack):
                print(line)
            return 0 if all(server.pid() and server.is_healthy() for server in stack) else 3
        if args.command == "down":
            return command_down(stack)
        if args.command == "reset":
            return command_reset(stack)
        for server in stack:
            log(f"{server.name}: jars in {fetch(server.name)}")
        return 0
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
