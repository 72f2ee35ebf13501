"""docker-compose.yml says what configs/ says: ports, Kafka version, topics and partitions.

The compose file cannot read the YAML in configs/, so its values are copies; these tests
catch the copies drifting when someone edits one side only.
"""

from __future__ import annotations

import shlex

import pytest
import yaml

from clearline import config
from tests import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each "ip:host:container" port mapping."""
    mappings = []
    for entry in service["ports"]:
        ip, host_port, container_port = str(entry).split(":")
        mappings.append((ip, int(host_port), int(container_port)))
    return mappings


def options_of(words: list[str]) -> dict[str, str | None]:
    """{"--option": value or None for a flag} of a command line's words."""
    options = {}
    for word, following in zip(words, [*words[1:], None]):
        if word.startswith("--"):
            options[word] = None if following is None or following.startswith("--") else following
    return options


def test_kafka_matches_broker_config(services):
    broker = config.load("broker")
    kafka = services["kafka"]
    env = kafka["environment"]
    assert kafka["image"] == f"apache/kafka:{broker['kafka_version']}"
    assert published(kafka) == [(broker["host"], broker["port"], broker["port"])]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{broker['host']}:{broker['port']}"
    assert f"PLAINTEXT://:{broker['port']}" in env["KAFKA_LISTENERS"].split(",")
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@127.0.0.1:{broker['controller_port']}"
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"


def test_topic_init_creates_every_configured_topic(services):
    """Each kafka-topics.sh line of the one-shot container, against configs/topics.yaml."""
    init = services["kafka-topics"]
    assert init["image"] == services["kafka"]["image"]
    assert init["network_mode"] == "service:kafka"
    script = "\n".join(init["command"])
    created = {}
    for line in script.splitlines():
        words = shlex.split(line)
        if not words or not words[0].endswith("kafka-topics.sh"):
            continue
        options = options_of(words[1:])
        assert "--create" in options and "--if-not-exists" in options, line
        created[options["--topic"]] = {
            "partitions": int(options["--partitions"]),
            "replication_factor": int(options["--replication-factor"]),
            "retention_ms": int(options["--config"].removeprefix("retention.ms=")),
        }
    wanted = {
        name: {key: spec[key] for key in ("partitions", "replication_factor", "retention_ms")}
        for name, spec in config.load("topics")["topics"].items()
    }
    assert created == wanted


def test_bootstrap_servers_reach_the_published_kafka_port():
    broker = config.load("broker")
    assert config.load("topics")["bootstrap_servers"] == f"{broker['host']}:{broker['port']}"


@pytest.mark.parametrize("name", ["redis", "mlflow"])
def test_companion_service_ports_match_services_config(services, name):
    wanted = config.load("services")[name]
    assert published(services[name]) == [(wanted["host"], wanted["port"], wanted["port"])]


def test_mlflow_listens_on_its_published_port_with_a_sqlite_backend(services):
    command = services["mlflow"]["command"]
    assert f"--port={config.load('services')['mlflow']['port']}" in command
    assert any(arg.startswith("--backend-store-uri=sqlite:////mlflow/") for arg in command)
    assert "mlflow-data:/mlflow" in services["mlflow"]["volumes"]
