"""Hostile input against the real broker and the real ledger flow (`ledger run --once`).

1. Card numbers planted through every way a message can be refused (bad signature, unknown
   or missing tenant, invalid UTF-8, oversize, malformed JSON, the card number itself, a
   tombstone), written every way (plain, grouped by spaces or dashes, JSON-escaped,
   UTF-16/32, among bytes that are not UTF-8), in values, keys and headers. After the
   run, `tests/pan_scan.py` reads everything the flow wrote: the dead-letter topic
   (values, keys, headers), every DuckDB table, every Parquet file (snapshots, archive),
   every other file of its state folder, and every line it logged. It must find none.
2. A standing Hypothesis suite: batches of hostile messages (random bytes, JSON of every
   shape, deep nesting, huge numbers, floats, headers, sizes up to and past the broker's
   limit, encodings, signed or not), one flow run per batch. The flow always exits 0,
   every message is posted, a duplicate or dead-lettered, and no card number is at rest.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from clearline import events
from clearline.admission import KEPT_BYTES
from clearline.signing import TENANT_HEADER, TenantKeys
from tests.pan_scan import find_pans, scan_files, scan_kafka, scan_messages, scan_tree
from tests.pipelines.ledger_harness import (
    COUNTERS,
    MERCHANT,
    authorization,
    child_env,
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
KEYS = TenantKeys.from_config()
PANS = ["4111111111111111", "5555555555554444", "378282246310005", "6011000990139424"]


def event(n: int, token: str = "tok_x") -> bytes:
    return authorization(f"evt_hostile_{n:06d}", token=token)


def ways(pan: str) -> dict[str, bytes]:
    """One card number written every way it can hide in a message's bytes."""
    g = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    return {
        "plain": pan.encode(),
        "spaces": " ".join(g).encode(),
        "dashes": "-".join(g).encode(),
        "json-escaped": "".join(f"\\u{ord(c):04x}" for c in pan).encode(),
        "utf-16": pan.encode("utf-16-le"),
        "utf-32": pan.encode("utf-32-be"),
        "in invalid utf-8": b"\xff\xfe" + pan.encode() + b"\xc3\x28",
    }


def plants() -> list[tuple[str, bytes | None, bytes | None, list]]:
    """(how, value, key, headers): a card number through every refusal path."""
    out = []
    for i, (how, written) in enumerate(ways(PANS[0]).items()):
        note = b'{"note":"card ' + written + b'","event_id":"evt_note_' + str(i).encode() + b'"}'
        out += [
            (f"{how} / bad signature", note, MERCHANT.encode(), signed(note, key_tenant="rs_002")),
            (f"{how} / unknown tenant", note, MERCHANT.encode(), [(TENANT_HEADER, b"rs_999")]),
            (f"{how} / no tenant", note, MERCHANT.encode(), []),
            (f"{how} / signed, refused by the contract", note, MERCHANT.encode(), signed(note)),
            (f"{how} / in the key", b"{}", written, []),
            (f"{how} / in a header", b"{}", None, [("x-card", written), (TENANT_HEADER, written)]),
        ]
    body = event(1, token=f"tok_{PANS[1]}")
    out.append(("a card number as the token, signed", body, MERCHANT.encode(), signed(body)))
    invalid = event(2).replace(b"tok_x", b"tok_\xff" + PANS[2].encode())
    out.append(("invalid utf-8 around a card number, signed", invalid, MERCHANT.encode(), signed(invalid)))
    escaped = event(3).replace(b"tok_x", "".join(f"\\u{ord(c):04x}" for c in PANS[3]).encode())
    out.append(("a json-escaped card number, signed", escaped, MERCHANT.encode(), signed(escaped)))
    oversize = event(4).replace(b"tok_x", b"tok_" + PANS[0].encode() + b"_" + b"x" * 70_000)
    out.append(("oversize for the contract, signed", oversize, MERCHANT.encode(), signed(oversize)))
    # past what is kept: card numbers before the cut, across it, and after it
    cut = b"y" * (KEPT_BYTES - 8) + PANS[1].encode() + b" " + PANS[2].encode() + b"z" * 1000 + PANS[3].encode()
    out.append(("past what is kept, unsigned", cut, PANS[0].encode(), []))
    out.append(("a tombstone with a card number as its key", None, PANS[2].encode(), [("x-pan", PANS[3].encode())]))
    wide = json.dumps({"note": f"card {PANS[1]}", "event_id": PANS[0]}).encode("utf-16")
    out.append(("a utf-16 document", wide, None, signed(wide)))
    return out


def scan_run(bootstrap: str, dlq: str, state: Path, logs: Path) -> list:
    """Everything a run wrote: the dead-letter topic, its state folder, its logs."""
    return scan_kafka(bootstrap, [dlq]) + scan_tree(state) + scan_tree(logs)


@pytest.fixture
def flow_env(tmp_path):
    return child_env(private_configs(tmp_path / "configs")), tmp_path / "state", tmp_path / "logs"


def test_no_card_number_is_at_rest_or_sent_on_whatever_the_refusal(kafka_bootstrap, flow_env):
    env, state, logs = flow_env
    planted = plants()
    for how, value, key, headers in planted:  # the scanner sees every plant, else the test proves nothing
        assert scan_values_of(value, key, headers), f"the scanner misses the plant: {how}"
    good = [event(100 + n) for n in range(10)]
    messages = [(b, MERCHANT.encode(), signed(b)) for b in good] + [(v, k, h) for _, v, k, h in planted]
    with fresh_topics(kafka_bootstrap, "test.hostile.pan") as (topic, dlq):
        produce_raw(kafka_bootstrap, topic, messages, **{"message.max.bytes": 2_000_000})
        run_once(flow_args(topic, dlq, state, once=True), env, logs, "pan")
        totals, _, _ = topic_stats(state, topic)
        assert totals == {"consumed": len(messages), "posted": 10, "duplicate": 0, "dead_lettered": len(planted)}
        assert len(read_topic(kafka_bootstrap, dlq)) == len(planted)
        findings = scan_run(kafka_bootstrap, dlq, state, logs)
    assert not findings, "\n".join(map(str, findings[:30]))


def scan_values_of(value, key, headers) -> list:
    return find_pans(value) + find_pans(key) + [f for k, v in headers for f in find_pans(k.encode() + b"=" + v)]


# ------------------------------------------------------------------ the standing suite

_ids = itertools.count(1_000)
BROKER_LIMIT = 1_048_576  # the suite's topics take this (about the broker's default) ...
PRODUCER_LIMIT = 3_000_000  # ... and its producer sends up to this, compressed to fit the topic

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.sampled_from([events.MAX_MINOR, events.MAX_MINOR + 1, 2**64, -(2**63)])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(PANS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
EVENT_FIELDS = ["event_id", "event_type", "occurred_at", "merchant_id", "reseller_id", "schema_version", "payload"]
PAYLOAD_FIELDS = ["payment_id", "order_id", "buyer_id", "processor", "method", "amount", "instrument_token", "x"]


@st.composite
def values(draw) -> bytes | None:
    """One hostile message value."""
    kind = draw(
        st.sampled_from(["bytes", "json", "mutated", "deep", "number", "large", "encoded", "tombstone", "valid"])
    )
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "tombstone":
        return None
    doc = json.loads(event(next(_ids)))
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from(EVENT_FIELDS + [f"payload.{f}" for f in PAYLOAD_FIELDS]))
            node, name = (doc["payload"], field[8:]) if field.startswith("payload.") else (doc, field)
            if isinstance(node, dict):  # an earlier change may have made the payload no object
                node[name] = draw(json_values)
        return json.dumps(doc, allow_nan=True).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([50, 999, 1_001, 30_000]))
        opener = draw(st.sampled_from([b"[", b'{"a":']))
        closer = b"]" if opener == b"[" else b"}"
        return opener * depth + b"1" + closer * depth
    if kind == "number":
        digits = draw(st.sampled_from([19, 20, 39, 4_300, 4_301, 20_000]))
        doc["payload"]["amount"]["minor"] = "@@"
        return json.dumps(doc).encode().replace(b'"@@"', b"9" * digits)
    if kind == "large":
        size = draw(st.sampled_from([64 * 1024 + 1, KEPT_BYTES, KEPT_BYTES + 1, 1_040_000, 2_500_000]))
        piece = draw(st.sampled_from([b"q", b"7", b"4111 ", b"1 "]))
        return (piece * (size // len(piece) + 1))[:size]
    if kind == "encoded":
        text = json.dumps(doc, ensure_ascii=False).replace("tok_x", "tok_é✓")
        return text.encode(draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "utf-8-sig", "cp1252"])), "replace")
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()  # valid


@st.composite
def messages(draw) -> tuple[bytes | None, bytes | None, list]:
    """(value, key, headers): a value, maybe with a card number written into it somewhere,
    signed right, signed wrong, or not at all, with keys and headers of any kind."""
    value = draw(values())
    if value is not None and draw(st.booleans()):
        written = draw(st.sampled_from(list(ways(draw(st.sampled_from(PANS))).values())))
        at = draw(st.integers(0, len(value)))
        value = value[:at] + written + value[at:]
    signing = draw(st.sampled_from(["right", "right", "wrong key", "unknown tenant", "none", "random"]))
    if signing == "right" and value is not None:
        headers = signed(value)
    elif signing == "wrong key" and value is not None:
        headers = signed(value, key_tenant="rs_002")
    elif signing == "unknown tenant":
        headers = [(TENANT_HEADER, draw(st.binary(max_size=30) | st.sampled_from([p.encode() for p in PANS])))]
    elif signing == "random":
        headers = draw(st.lists(st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=40)), max_size=4))
    else:
        headers = []
    key = draw(st.none() | st.binary(max_size=40) | st.sampled_from([p.encode() for p in PANS] + [MERCHANT.encode()]))
    return value, key, headers


def _size(m) -> int:
    return len(m[0] or b"")


batches = st.lists(messages(), min_size=1, max_size=10).filter(lambda b: sum(map(_size, b)) <= 6_000_000)


@pytest.fixture(scope="module")
def suite(kafka_bootstrap, tmp_path_factory):
    """One pair of topics, one state folder: every example's batch is a resumed --once run."""
    root = tmp_path_factory.mktemp("hostile")
    env = child_env(private_configs(root / "configs"))
    limit = {"max.message.bytes": BROKER_LIMIT}
    with fresh_topics(kafka_bootstrap, "test.hostile.suite", configs=(limit, limit)) as (topic, dlq):
        yield {"env": env, "state": root / "state", "logs": root / "logs", "topic": topic, "dlq": dlq, "runs": [0]}


# No shrinking: the examples share one topic and store (each resumes the last), so a
# shrunk replay is not the same run; the failing batch is reported as drawn.
@settings(
    max_examples=24,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(batch=batches, resend=st.booleans())
def test_hostile_batches_never_stop_the_flow_nor_lose_a_message_nor_leave_a_card_number(
    suite, kafka_bootstrap, batch, resend
):
    topic, dlq, state, logs = suite["topic"], suite["dlq"], suite["state"], suite["logs"]
    admitted = [m for m in batch if _admitted(m)]
    fresh = [m for m in admitted if events.decode(m[0]).event_id.startswith("evt_hostile_")]
    if resend and fresh:
        batch, admitted = batch + [fresh[0]], admitted + [fresh[0]]  # the same signed event again
    before = topic_stats(state, topic)[0] if suite["runs"][0] else dict.fromkeys(COUNTERS, 0)
    letters_before = len(read_topic(kafka_bootstrap, dlq))
    produce_raw(
        kafka_bootstrap,
        topic,
        batch,
        **{"compression.type": "lz4", "message.max.bytes": PRODUCER_LIMIT, "batch.size": PRODUCER_LIMIT},
    )
    suite["runs"][0] += 1
    run_once(flow_args(topic, dlq, state, once=True), suite["env"], logs, f"example-{suite['runs'][0]}")  # exit 0

    after = topic_stats(state, topic)[0]
    moved = {k: after[k] - before[k] for k in COUNTERS}
    assert moved["consumed"] == len(batch) == moved["posted"] + moved["duplicate"] + moved["dead_lettered"]
    assert moved["posted"] + moved["duplicate"] <= len(admitted)  # nothing refused by admission is posted
    assert moved["posted"] >= len({events.decode(m[0]).event_id for m in fresh})  # every fresh good event is
    assert moved["duplicate"] >= (1 if resend and fresh else 0)
    letters = read_topic(kafka_bootstrap, dlq)
    assert len(letters) - letters_before == moved["dead_lettered"]  # each one sent
    findings = _scan_what_changed(suite, letters, state, logs)
    assert not findings, "\n".join(map(str, findings[:30]))


def _scan_what_changed(suite: dict, letters: list, state: Path, logs: Path) -> list:
    """The letters and files not scanned yet (a file as it was: path, size, mtime), so each
    example costs its own run, not the whole history's."""
    seen = suite.setdefault("seen", set())
    new_letters = [m for m in letters if (m.partition(), m.offset()) not in seen]
    seen.update((m.partition(), m.offset()) for m in new_letters)
    files = []
    for path in sorted(p for root in (state, logs) for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        if (key := (str(path), stat.st_size, stat.st_mtime_ns)) not in seen:
            seen.add(key)
            files.append(path)
    return scan_messages(new_letters) + scan_files(files)


def _admitted(message) -> bool:
    """Whether the ledger's admission takes the message (so it must be posted, not refused)."""
    from clearline.admission import admit

    value, _, headers = message
    try:
        return isinstance(admit(value, [(k, v) for k, v in headers], KEYS), events.Event)
    except Exception:  # noqa: BLE001 — the flow must then refuse it, which the counts check
        return False
