"""Poison pills: single messages that used to stop the ledger flow for good, each produced to
the real broker and run through the real flow (`clearline ledger run --once`, child process).

* A 1,040,000-byte message, sent compressed to a topic that takes ~1 MB: the dead-letter
  producer refused its bytes (MSG_SIZE_TOO_LARGE), the flow exited 1, and every restart
  re-sent the same letter from the outbox and died again. Now the letter is a bounded
  prefix with the whole's length and SHA-256, and a restart sends nothing twice.
* A dead-letter topic that refuses even a short letter: the refusal is recorded and
  counted, the flow goes on, and no restart sends it again.
* Amounts: a signed event above 2^63 − 1 crashed every run in the store's column builder,
  and two of 2^63 − 1 each were posted and then broke `ledger balances` (INT128 out of
  range for INT64). Now the contract refuses the first, naming the bound, and balances
  are 128-bit sums: many postings of the largest amount print exactly.
* Signed JSON nested 60,000 deep, or a number of 5,000 digits, crashed decoding.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from clearline import events
from clearline.admission import KEPT_BYTES
from clearline.pipelines.connectors.ledger_sink import FALLBACK_BYTES
from tests import REPO_ROOT
from tests.pipelines.ledger_harness import (
    MERCHANT,
    PROCESSOR,
    TENANT,
    authorization,
    child_env,
    clearline_json,
    flow_args,
    fresh_topics,
    private_configs,
    produce_raw,
    read_topic,
    run_once,
    signed,
    topic_stats,
)

pytestmark = pytest.mark.kafka
BROKER_LIMIT = 1_048_576  # the topics' max.message.bytes in these tests: about the broker's default


def with_minor(body: bytes, minor_text: bytes) -> bytes:
    """The same event with its amount written as `minor_text` (the encoder refuses such numbers)."""
    doc = json.loads(body)
    doc["event_id"] += "_x"
    doc["payload"]["amount"]["minor"] = "@@MINOR@@"
    return json.dumps(doc).encode().replace(b'"@@MINOR@@"', minor_text)


def headers_of(message) -> dict[str, str]:
    return {k: v.decode() for k, v in message.headers() or []}


@pytest.fixture
def flow(kafka_bootstrap, tmp_path):
    """(run: one `ledger run --once` to completion, env, state, logs) for a test's topics."""
    env = child_env(private_configs(tmp_path / "configs"))
    state, logs = tmp_path / "state", tmp_path / "logs"

    def run(topic: str, dlq: str, name: str) -> None:
        run_once(flow_args(topic, dlq, state, once=True), env, logs, name)

    return run, env, state, logs


def test_an_oversized_message_is_dead_lettered_as_a_bounded_prefix_and_never_sent_twice(kafka_bootstrap, flow):
    run, _, state, _ = flow
    limit = {"max.message.bytes": BROKER_LIMIT}
    good = [authorization(f"evt_poison_{n:05d}", 1999) for n in range(20)]
    huge = b"q" * 1_040_000
    with fresh_topics(kafka_bootstrap, "test.poison.size", configs=(limit, limit)) as (topic, dlq):
        produce_raw(
            kafka_bootstrap,
            topic,
            [(b, MERCHANT.encode(), signed(b)) for b in good[:10]]
            + [(huge, MERCHANT.encode(), [])]
            + [(b, MERCHANT.encode(), signed(b)) for b in good[10:]],
            **{"compression.type": "lz4", "message.max.bytes": 2_000_000},
        )
        run(topic, dlq, "first")
        totals, _, _ = topic_stats(state, topic)
        assert totals == {"consumed": 21, "posted": 20, "duplicate": 0, "dead_lettered": 1}

        (letter,) = read_topic(kafka_bootstrap, dlq)
        headers = headers_of(letter)
        assert headers["reason"] == "tenant" and headers["truncated"] == "true"
        assert int(headers["value-length"]) == len(huge)
        assert headers["value-sha256"] == hashlib.sha256(huge).hexdigest()
        assert letter.value() == huge[:KEPT_BYTES]

        run(topic, dlq, "restart")  # the outbox holds nothing unsent: no letter again
        run(topic, dlq, "restart-again")
        assert len(read_topic(kafka_bootstrap, dlq)) == 1
        assert topic_stats(state, topic)[0]["dead_lettered"] == 1


def test_a_letter_too_large_for_the_dead_letter_topic_is_sent_cut_short(kafka_bootstrap, flow):
    """The topic takes 4 KiB: the 100 KB letter is refused, and with it the small letter
    batched beside it; both go again, the large one as a prefix of FALLBACK_BYTES."""
    run, _, state, _ = flow
    large, small = b"x" * 100_000, b"not json"
    with fresh_topics(kafka_bootstrap, "test.poison.cut", configs=({}, {"max.message.bytes": 4096})) as (topic, dlq):
        produce_raw(kafka_bootstrap, topic, [(large, b"k", signed(large), 0), (small, b"k", signed(small), 0)])
        run(topic, dlq, "first")
        letters = {headers_of(m)["origin-offset"]: m for m in read_topic(kafka_bootstrap, dlq)}
        assert sorted(letters) == ["0", "1"]
        cut, whole = headers_of(letters["0"]), headers_of(letters["1"])
        assert (cut["truncated"], cut["value-length"], cut["reason"]) == ("true", "100000", "contract:oversize")
        assert letters["0"].value() == large[:FALLBACK_BYTES]
        assert (whole["truncated"], letters["1"].value(), whole["reason"]) == ("false", small, "contract:json")
        assert not (state / "shards/shard-0/deadletters.refused").exists()


def test_a_letter_the_dead_letter_topic_always_refuses_is_recorded_and_never_retried(kafka_bootstrap, flow):
    run, _, state, _ = flow
    good = [authorization(f"evt_poison_{100 + n:05d}", 500) for n in range(5)]
    bad = [b"q" * 200_000, b"\xff\xfe garbage"]
    refused = state / "shards/shard-0/deadletters.refused"
    with fresh_topics(kafka_bootstrap, "test.poison.refused", configs=({}, {"max.message.bytes": 200})) as (
        topic,
        dlq,
    ):
        produce_raw(
            kafka_bootstrap, topic, [(b, MERCHANT.encode(), signed(b)) for b in good] + [(b, None, []) for b in bad]
        )
        run(topic, dlq, "first")
        totals, _, _ = topic_stats(state, topic)
        assert totals == {"consumed": 7, "posted": 5, "duplicate": 0, "dead_lettered": 2}
        entries = [json.loads(line) for line in refused.read_text().splitlines()]
        assert sorted(e["length"] for e in entries) == sorted(len(b) for b in bad)
        assert all(e["reason"] == "tenant" and "too large" in e["error"] for e in entries)
        assert read_topic(kafka_bootstrap, dlq) == []

        run(topic, dlq, "restart")
        assert refused.read_text().count("\n") == 2, "a restart tried a refused letter again"


def test_amounts_at_and_beyond_the_bound_and_hostile_json_never_stop_the_flow(kafka_bootstrap, flow):
    """The largest admissible amount, 40 times on one account, is posted and summed exactly;
    the pills are dead-lettered naming the bound; `ledger balances` and `statement` print."""
    run, env, state, _ = flow
    n_max = 40
    maxed = [authorization(f"evt_poison_{200 + n:05d}", events.MAX_MINOR) for n in range(n_max)]
    over = with_minor(authorization("evt_poison_300", 1), str(events.MAX_MINOR + 1).encode())
    huge = with_minor(authorization("evt_poison_301", 1), str(2**70).encode())
    digits = with_minor(authorization("evt_poison_302", 1), b"9" * 5000)
    deep = b'{"event_id":"evt_deep","payload":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    pills = {over: "contract:range", huge: "contract:range", digits: "contract:range", deep: "contract:depth"}
    with fresh_topics(kafka_bootstrap, "test.poison.amount", partitions=1) as (topic, dlq):
        produce_raw(
            kafka_bootstrap,
            topic,
            [(b, MERCHANT.encode(), signed(b)) for b in maxed[:20]]
            + [(b, MERCHANT.encode(), signed(b)) for b in pills]
            + [(b, MERCHANT.encode(), signed(b)) for b in maxed[20:]],
        )
        run(topic, dlq, "first")
        totals, _, _ = topic_stats(state, topic)
        assert totals == {"consumed": n_max + 4, "posted": n_max, "duplicate": 0, "dead_lettered": 4}
        letters = read_topic(kafka_bootstrap, dlq, partitions=1)
        assert sorted(headers_of(m)["reason"] for m in letters) == sorted(pills.values())
        assert any(str(events.MAX_MINOR) in headers_of(m)["detail"] for m in letters)

    offset = f"{TENANT}:auth_hold_offset:{PROCESSOR}"
    rc, shown = clearline_json(env, "ledger", "balances", "--state-dir", str(state), "--account", offset)
    assert rc == 0, shown
    (row,) = shown["balances"]
    assert (row["credit"], row["debit"], row["balance"]) == (n_max * events.MAX_MINOR, 0, -n_max * events.MAX_MINOR)
    assert n_max * events.MAX_MINOR > 2**63 - 1  # the sum needs more than 64 bits
    rc, stated = clearline_json(env, "ledger", "statement", offset, "--state-dir", str(state))
    assert rc == 0 and [p["balance"] for p in stated["postings"]][-1] == -n_max * events.MAX_MINOR
    for args in (["balances"], ["statement", offset]):  # the tables for people, too
        done = subprocess.run(
            [sys.executable, "-m", "clearline.pipelines.cli", "ledger", *args, "--state-dir", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO_ROOT,
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    rc, check = clearline_json(env, "ledger", "check", "--state-dir", str(state))
    assert not [v for v in check["violations"] if v.startswith("[balance]")], check["violations"]
