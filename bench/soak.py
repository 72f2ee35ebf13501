"""Soak: exactly-once at scale while the ledger flow and the broker are killed again and again.

Not a test (it takes many minutes); the ledger resilience tests
(tests/pipelines/test_ledger_resilience.py) prove each fault on its own at a smaller size,
and this runs them together on a large world, with the tests' own harness and verdict:

1. a broker of its own (free ports, a copy of configs/, the installed jars), so killing
   it never touches the shared broker other work on this machine uses;
2. a generated world (about 1 M events at the defaults), produced live at `--rate`
   events/s while `clearline ledger run` (tail mode) consumes it;
3. meanwhile, at seeded random moments spread over the production window, `--flow-kills`
   SIGKILLs of the flow (each followed by a restart) and `--broker-kills` SIGKILLs of the
   broker (each followed by `clearline kafka up`; the flow and the producer must ride
   it out on their own);
4. once everything is produced and consumed, SIGTERM, then the verdict: every produced
   event posted exactly once (the counters, the offsets against the broker's, the
   archive, no dead letters), `ledger check` and `ledger verify` hold, and `ledger
   rebuild` from offset 0 into a fresh store gives the same chain head.

Each step is printed as it happens; the summary (with `--json`, one JSON object) states
the counts. Exit status 1, naming what failed, if any of it does not hold.

    python bench/soak.py [--merchants 450 --days 120] [--rate 5000] [--flow-kills 20] [--broker-kills 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The soak drives the flow with the resilience tests' own harness and verdict, which live in
# the checkout's tests/ (this script runs from a checkout, like every benchmark).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clearline import config  # noqa: E402
from clearline.pipelines import broker  # noqa: E402
from clearline.pipelines.connectors.produce import produce_world  # noqa: E402
from clearline.pipelines.world.generate import WorldOptions, generate  # noqa: E402
from tests.pipelines.ledger_harness import (  # noqa: E402
    Flow,
    assert_exactly_once,
    child_env,
    clearline_json,
    event_ids,
    flow_args,
    free_ports,
    fresh_topics,
    private_configs,
    published_counts,
    rewrite_yaml,
    wait_until,
)

T0 = time.monotonic()
SETTLED_S = 15.0  # a flow this long after its start is past start-up


def say(message: str) -> None:
    print(f"[soak {time.monotonic() - T0:7.1f} s] {message}", flush=True)


def private_broker(tmp: Path) -> tuple[dict[str, str], str]:
    """A broker of our own; this process's environment points at it (for the producer and
    the admin client), and the returned one for the children. Returns (env, bootstrap)."""
    libs = broker.home() / "libs"
    if not (libs / ".installed").is_file():
        raise SystemExit("error: the broker's jars are not installed here: run `clearline kafka up` once")
    port, controller_port = free_ports(2)
    configs = private_configs(tmp / "configs")
    # a broker restarted on a loaded machine (the flow catching up, the producer retrying)
    # can take longer than the interactive default to answer
    rewrite_yaml(configs / "broker.yaml", port=port, controller_port=controller_port, heap="1g", start_timeout_s=300)
    rewrite_yaml(configs / "topics.yaml", bootstrap_servers=f"127.0.0.1:{port}", topics={})
    home = tmp / "home"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to(libs)
    os.environ.update(CLEARLINE_CONFIG_DIR=str(configs), CLEARLINE_HOME=str(home))
    os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    assert broker.home() == home / "kafka", "the soak must never run against the shared broker"
    return child_env(configs), f"127.0.0.1:{port}"


def kafka_up(env: dict[str, str]) -> float:
    """`clearline kafka up` as a child process (so the broker is not our child: after a
    SIGKILL it is reaped by init, not left a zombie that looks alive); its wall time."""
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "clearline.pipelines.cli", "kafka", "up"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        raise SystemExit(f"error: clearline kafka up exited {done.returncode}: {' '.join(said)}\n{done.stderr[-1500:]}")
    return time.monotonic() - start


def kill_broker() -> int:
    pid = int((broker.home() / broker.PID_FILE).read_text())
    os.kill(pid, signal.SIGKILL)
    return pid


def schedule(rng: random.Random, flow_kills: int, broker_kills: int, window: float) -> list[tuple[float, str]]:
    """(seconds to wait before the kill, "flow" or "broker"), the kinds shuffled; each wait
    counts from the end of the previous kill's recovery step and is drawn around the mean
    that spreads the kills over the production window, so they land while events flow,
    some in a restart's start-up and some in the middle of its work."""
    kinds = ["flow"] * flow_kills + ["broker"] * broker_kills
    rng.shuffle(kinds)
    mean = max(window / max(len(kinds), 1), 1.0)
    return [(rng.uniform(0.2, 2 * mean), kind) for kind in kinds]


def consumed(state: Path, topic: str) -> int:
    counts = published_counts(state, topic)
    return counts["consumed"] if counts else 0


def soak(args: argparse.Namespace, tmp: Path) -> dict:
    env, bootstrap = private_broker(tmp)
    say(f"private broker up at {bootstrap} in {kafka_up(env):.1f} s")
    world = tmp / "world"
    manifest = generate(WorldOptions(args.days, args.merchants, args.seed), world)
    total = manifest["events"]
    produced_ids = event_ids(world)
    say(f"world generated: {total:,} events")
    rng = random.Random(args.seed)
    plan = schedule(rng, args.flow_kills, args.broker_kills, total / args.rate)
    state, logs = tmp / "state", tmp / "logs"
    history: list[dict] = []
    flow = None
    try:
        with fresh_topics(bootstrap, "soak") as (topic, dlq):
            report: dict = {}
            producer = threading.Thread(
                target=lambda: report.update(produce_world(world, rate=args.rate, topic=topic).as_dict()),
                name="producer",
            )
            flow = Flow(flow_args(topic, dlq, state), env, logs, "flow").start()
            start = time.monotonic()
            producer.start()
            say(f"producing {total:,} events at {args.rate:,}/s to {topic}; the flow runs (pid {flow.pid})")
            for wait, kind in plan:
                time.sleep(wait)
                at = time.monotonic() - start
                before = consumed(state, topic)
                if kind == "flow":
                    if not flow.alive():
                        raise AssertionError(
                            f"the flow exited on its own (status {flow.proc.returncode})\n{flow.tail()}"
                        )
                    rc = flow.kill()
                    flow.start()
                    history.append({"at_s": round(at, 1), "kill": "flow", "exit": rc, "consumed_before": before})
                    say(f"flow SIGKILLed (exit {rc}) with {before:,} consumed; restarted (pid {flow.pid})")
                else:
                    pid = kill_broker()
                    down = rng.uniform(0.0, 5.0)
                    time.sleep(down)
                    up = kafka_up(env)
                    history.append({"at_s": round(at, 1), "kill": "broker", "down_s": round(down + up, 1)})
                    say(
                        f"broker SIGKILLed (pid {pid}) with {before:,} consumed; "
                        f"`kafka up` after {down:.1f} s took {up:.1f} s"
                    )
            producer.join()
            if report.get("failed") or report.get("delivered") != total:
                raise AssertionError(f"the producer did not deliver every event: {report}")
            say(f"all {total:,} events produced ({report['seconds']:.0f} s); waiting for the flow to consume them")
            # and the last restart past its start-up, where Python has not yet installed the
            # flow's SIGTERM handler (a SIGTERM there ends it by the default action, a crash)
            waited = wait_until(
                lambda: consumed(state, topic) >= total and time.monotonic() - flow.started_at > SETTLED_S,
                args.drain_timeout,
                "every event consumed",
                [flow],
            )
            rc = flow.terminate()
            say(f"all consumed {waited:.0f} s after production ended; SIGTERM: exit {rc}")
            if rc != 0:
                raise AssertionError(f"the flow exited {rc} on SIGTERM\n{flow.tail()}")
            opening = len(config.load("platform")["bank_accounts"])
            totals = assert_exactly_once(state, topic, dlq, bootstrap, produced_ids, env, opening, resent=True)
            say(f"exactly once: {totals}; ledger check and ledger verify hold; the archive holds each event once")
            t = time.monotonic()
            rc, rebuild = clearline_json(env, "ledger", "rebuild", "--state-dir", str(state), "--topic", topic)
            if rc != 0 or not rebuild.get("identical"):
                raise AssertionError(f"ledger rebuild from offset 0 differs: {rebuild}")
            say(f"rebuild from offset 0 in {time.monotonic() - t:.0f} s: the same chain head")
    finally:
        if flow is not None:
            flow.stop_quietly()  # a failed soak leaves no flow behind
        try:
            broker.down()
        except Exception as exc:  # a broker already gone: nothing to stop
            say(f"stopping the private broker: {exc}")
    return {
        "events": total,
        "produced_at_per_second": args.rate,
        "flow_kills": sum(h["kill"] == "flow" for h in history),
        "broker_kills": sum(h["kill"] == "broker" for h in history),
        "flow_runs": flow.runs,
        **{f"ledger_{k}": v for k, v in totals.items()},
        "rebuild_identical": rebuild["identical"],
        "kills": history,
        "seconds": round(time.monotonic() - T0),
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--merchants", type=int, default=450)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=int, default=5_000, help="events produced per second")
    ap.add_argument("--flow-kills", type=int, default=20)
    ap.add_argument("--broker-kills", type=int, default=3)
    ap.add_argument("--drain-timeout", type=float, default=1800, help="seconds to wait for the flow to catch up")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clearline-soak-") as tmp:
        try:
            result = soak(args, Path(tmp))
        except AssertionError as exc:
            raise SystemExit(f"error: the soak failed: {exc}") from None
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
