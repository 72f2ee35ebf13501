"""The local Apache Kafka broker behind `clearline kafka up | down | status`.

Clearline's pipeline and integration tests need a real Kafka, and a developer machine or
CI runner may have no Docker. So the broker runs straight from its jars: Maven fetches
Apache Kafka (KRaft mode, no ZooKeeper) from Maven Central into a cache folder once, and
the broker runs from there as a detached JVM that outlives the command that started it.
Users with Docker can run docker-compose.yml instead; `up` then finds a broker already
answering and only creates the topics. When KAFKA_BOOTSTRAP_SERVERS names another
cluster, nothing is started either: `up` checks that it answers and creates the topics.

The cache folder (configs/broker.yaml `home`, or $CLEARLINE_HOME/kafka) holds:

    libs/                 the broker's runtime jars, and a marker naming their versions
    data/                 log.dirs: the KRaft metadata log and the topics' partitions
    logs/server.log       the broker's log (logs/stdout.log: its console)
    server.properties     written from configs/broker.yaml at every start
    log4j2.properties     copied from configs/log4j2.properties
    kafka.pid             the pid of the broker `up` started
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from clearline import config

# The pom and the log4j2 template are part of the code, not of a deployment's configs.
TEMPLATES = config.default_dir()
MARKER = ".installed"
PID_FILE = "kafka.pid"
STOP_GRACE_S = 30
BROKER_KEYS = ("kafka_version", "log4j_version", "host", "port", "controller_port", "heap", "start_timeout_s", "home")

Progress = Callable[[str], None] | None

# librdkafka logs connection failures to stderr unless given a logger; while we probe a
# broker that is still starting, those failures are expected, so they go to Python
# logging (and stay there until someone configures it).
_log = logging.getLogger(__name__)
_log.addHandler(logging.NullHandler())


class BrokerError(Exception):
    """The broker cannot be installed, started or reached; the message says why."""


def home() -> Path:
    """The cache folder: $CLEARLINE_HOME/kafka, else configs/broker.yaml `home`."""
    env = os.environ.get("CLEARLINE_HOME")
    return Path(env) / "kafka" if env else Path(str(_settings()["home"])).expanduser()


def install(progress: Progress = None) -> Path:
    """Fetch the broker's jars from Maven Central into <home>/libs; returns <home>.

    Maven resolves Kafka's dependency tree (~46 jars, ~43 MB), so no jar list is kept
    here. The download goes to a scratch folder and the marker is written last, so an
    interrupted download is redone rather than run; a version change in
    configs/broker.yaml replaces the jars.
    """
    cfg = _settings()
    root = home()
    libs = root / "libs"
    wanted = f"kafka_2.13 {cfg['kafka_version']}\nlog4j {cfg['log4j_version']}\n"
    if (libs / MARKER).is_file() and (libs / MARKER).read_text() == wanted:
        return root
    _java()  # no point downloading a broker that cannot run
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (`mvn`) is not on PATH; it downloads Apache Kafka from Maven Central. "
            "Install it (e.g. `apt-get install maven`), or run Kafka with docker-compose.yml."
        )
    _say(progress, f"downloading Apache Kafka {cfg['kafka_version']} from Maven Central into {libs}")
    root.mkdir(parents=True, exist_ok=True)
    pom = root / "pom.xml"
    shutil.copyfile(TEMPLATES / "kafka-runtime-pom.xml", pom)
    scratch = root / "libs.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    done = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={scratch}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={cfg['kafka_version']}",
            f"-Dlog4j.version={cfg['log4j_version']}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BrokerError(
            f"mvn could not fetch Apache Kafka {cfg['kafka_version']}:\n{_last_lines(done.stdout + done.stderr)}"
        )
    (scratch / MARKER).write_text(wanted)
    shutil.rmtree(libs, ignore_errors=True)
    scratch.rename(libs)
    _say(progress, f"installed {len(list(libs.glob('*.jar')))} jars")
    return root


def up(progress: Progress = None) -> dict[str, Any]:
    """Make a broker answer at the bootstrap servers and create the topics; returns status().

    Idempotent: a broker that already answers there (ours, docker compose's, or another
    cluster named by KAFKA_BOOTSTRAP_SERVERS) is left as it is. A port held by something
    that is not Kafka is reported before starting, rather than as a broker dying on bind.
    """
    cfg = _settings()
    bootstrap = config.bootstrap_servers()
    if bootstrap != _local_address(cfg):
        if _topics(bootstrap, timeout=10) is None:
            raise BrokerError(
                f"no Kafka broker answers at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS or "
                f"configs/topics.yaml); a local broker is started only for "
                f"{_local_address(cfg)} (configs/broker.yaml)"
            )
        ensure_topics(bootstrap)
        return status()
    pid = _our_pid()
    if pid is None:
        host, port = cfg["host"], cfg["port"]
        if _port_taken(host, port):
            if _topics(bootstrap, timeout=5) is not None:
                ensure_topics(bootstrap)
                return status()
            raise BrokerError(
                f"port {port} on {host} is taken by something that is not a Kafka broker; "
                f"stop it or change `port` in configs/broker.yaml"
            )
        if _port_taken(host, cfg["controller_port"]):
            raise BrokerError(
                f"the KRaft controller port {cfg['controller_port']} on {host} is taken; "
                f"stop what holds it or change `controller_port` in configs/broker.yaml"
            )
        install(progress)
        _say(progress, f"starting Apache Kafka {cfg['kafka_version']} at {bootstrap}")
        pid = _start(cfg)
    _wait_ready(pid, bootstrap, cfg["start_timeout_s"])
    ensure_topics(bootstrap)
    return status()


def down() -> dict[str, Any]:
    """Stop the broker `up` started: SIGTERM, then SIGKILL after 30 s; else a no-op.

    Only the pid in our pid file is signalled: a broker run by docker compose or another
    cluster is not ours to stop. SIGTERM lets Kafka close its logs cleanly, so the next
    start needs no log recovery; the data folder is kept.
    """
    pid = _our_pid()
    if pid is None:
        return {"stopped": False, "pid": None, "killed": False}
    os.kill(pid, signal.SIGTERM)
    killed = not _wait_gone(pid, STOP_GRACE_S)
    if killed:
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5)
    (home() / PID_FILE).unlink(missing_ok=True)
    return {"stopped": True, "pid": pid, "killed": killed}


def status() -> dict[str, Any]:
    """Whether a broker answers at the bootstrap servers, ours or not, and its topics.

    JSON-serialisable. `pid` and `version` are known only for the local broker `up`
    started; `topics` maps each non-internal topic to its partition count, and
    `missing_topics` lists those of configs/topics.yaml the broker lacks.
    """
    cfg = _settings()
    bootstrap = config.bootstrap_servers()
    local = bootstrap == _local_address(cfg)
    pid = _our_pid() if local else None
    topics = _topics(bootstrap, timeout=5)
    return {
        "bootstrap": bootstrap,
        "running": topics is not None,
        "local": local,
        "pid": pid,
        "version": cfg["kafka_version"] if pid else None,
        "home": str(home()),
        "log": str(home() / "logs" / "server.log"),
        "topics": topics or {},
        "missing_topics": [t for t in config.load("topics")["topics"] if t not in (topics or {})],
    }


def ensure_topics(bootstrap: str) -> list[str]:
    """Create the topics of configs/topics.yaml that the broker lacks; returns those created.

    Idempotent, so every start calls it. An existing topic whose partition count differs
    from configs/topics.yaml is an error: partitions are the unit of parallelism and of
    ledger sharding, so running with other counts than configured would go unnoticed.
    """
    wanted = config.load("topics")["topics"]
    existing = _topics(bootstrap, timeout=10)
    if existing is None:
        raise BrokerError(f"no Kafka broker answers at {bootstrap}")
    for name, spec in wanted.items():
        if name in existing and existing[name] != spec["partitions"]:
            raise BrokerError(
                f"topic {name} at {bootstrap} has {existing[name]} partitions, "
                f"configs/topics.yaml says {spec['partitions']}"
            )
    new = [
        NewTopic(
            name,
            num_partitions=spec["partitions"],
            replication_factor=spec["replication_factor"],
            config={"retention.ms": config.typed(spec, "retention_ms", str)},
        )
        for name, spec in wanted.items()
        if name not in existing
    ]
    if not new:
        return []
    created = []
    admin = _admin(bootstrap)  # must outlive the futures: destroying it cancels them
    futures = admin.create_topics(new, operation_timeout=30, request_timeout=30)
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name} at {bootstrap}: {error.str()}") from None
    return created


def _settings() -> dict[str, Any]:
    cfg = config.load("broker")
    missing = [key for key in BROKER_KEYS if key not in cfg]
    if missing:
        raise config.ConfigError(f"configs/broker.yaml: missing {', '.join(missing)}")
    return cfg


def _local_address(cfg: dict[str, Any]) -> str:
    return f"{cfg['host']}:{cfg['port']}"


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java is not on PATH; Apache Kafka 4 needs Java 17 or later "
            "(e.g. `apt-get install openjdk-17-jre-headless`), or run it with docker-compose.yml."
        )
    return java


def _start(cfg: dict[str, Any]) -> int:
    """Write the broker's configuration, format its storage once, and launch it detached."""
    root = home()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    properties = root / "server.properties"
    properties.write_text(_server_properties(cfg, root))
    shutil.copyfile(TEMPLATES / "log4j2.properties", root / "log4j2.properties")
    jvm = [
        _java(),
        f"-Xmx{cfg['heap']}",
        f"-Dkafka.logs.dir={logs}",
        f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
        "-cp",
        str(root / "libs" / "*"),
    ]
    if not (root / "data" / "meta.properties").exists():
        done = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(properties)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BrokerError(
                f"formatting the broker's storage in {root / 'data'} failed:\n{_last_lines(done.stdout + done.stderr)}"
            )
    # posix_spawn rather than Popen: the broker is meant to outlive this process, in its
    # own session, and a Popen object would warn at collection that its child still runs.
    pid = os.posix_spawn(
        jvm[0],
        [*jvm, "kafka.Kafka", str(properties)],
        os.environ,
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(logs / "stdout.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )
    (root / PID_FILE).write_text(f"{pid}\n")
    return pid


def _cluster_id() -> str:
    """A new cluster id, as Kafka's own `Uuid.randomUuid` makes it.

    A base64url id starts with "-" once in 64 draws, and the storage tool's argument parser then
    reads it as an option ("argument --cluster-id/-t: expected one argument"): Kafka draws again
    in that case, and so do we.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _server_properties(cfg: dict[str, Any], root: Path) -> str:
    """A single node acting as both KRaft controller and broker, for one machine."""
    host, port, controller = cfg["host"], cfg["port"], cfg["controller_port"]
    return (
        "\n".join(
            [
                "# Written by pipelines/broker.py from configs/broker.yaml at every start.",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{host}:{controller}",
                f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
                f"advertised.listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={root / 'data'}",
                "num.partitions=4",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
            ]
        )
        + "\n"
    )


def _wait_ready(pid: int, bootstrap: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _topics(bootstrap, timeout=2) is None:
        if not _alive(pid):
            (home() / PID_FILE).unlink(missing_ok=True)
            raise BrokerError(f"the Kafka broker (pid {pid}) exited while starting:\n{_log_tail()}")
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the Kafka broker (pid {pid}) did not answer at {bootstrap} within "
                f"{timeout_s} s; it is still running (`clearline kafka down` stops it):\n"
                f"{_log_tail()}"
            )
        time.sleep(0.5)


def _topics(bootstrap: str, timeout: float) -> dict[str, int] | None:
    """{topic: partition count} of the broker at `bootstrap`, or None if none answers."""
    if not any(_reachable(address) for address in bootstrap.split(",")):
        return None  # nothing listens: don't wait out the metadata timeout
    try:
        metadata = _admin(bootstrap).list_topics(timeout=timeout)
    except KafkaException:
        return None
    return {name: len(topic.partitions) for name, topic in sorted(metadata.topics.items()) if not name.startswith("__")}


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "logger": _log})


def _reachable(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
        return True
    except (OSError, ValueError):
        return False


def _port_taken(host: str, port: int) -> bool:
    """Whether another socket holds host:port (bound, listening or not)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _our_pid() -> int | None:
    """The pid of the broker `up` started, if it still runs; a stale pid file is removed."""
    path = home() / PID_FILE
    try:
        pid = int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    path.unlink(missing_ok=True)
    return None


def _alive(pid: int) -> bool:
    """Whether `pid` is a running Kafka broker: not exited, not a pid reused by another program."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is an exited child of this process
    except ChildProcessError:
        pass
    # -ww: the whole command line, however narrow COLUMNS says the terminal is.
    command = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True).stdout
    return "kafka.Kafka" in command


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _log_tail(lines: int = 20) -> str:
    parts = []
    for log in (home() / "logs" / "stdout.log", home() / "logs" / "server.log"):
        if log.is_file():
            with open(log, "rb") as file:
                file.seek(max(0, log.stat().st_size - 64_000))
                text = file.read().decode(errors="replace")
            if text.strip():
                parts.append(f"--- {log} ---\n{_last_lines(text, lines)}")
    return "\n".join(parts) or "(the broker wrote no log)"


def _last_lines(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
