"""An emergency freeze on the real decision API: `clearline serve` (two workers) in a
subprocess, reading the freezes snapshot configs/policy.yaml names, written by the
workbench's own `publish`. A frozen merchant's next orders are declined with the reason
frozen_merchant and stored so; another merchant's are decided as before; a lift brings
the merchant back at the next request, without a restart."""

from __future__ import annotations

import shutil

import pytest
import yaml

from clearline import config
from clearline.pipelines.workbench import freezes as workbench_freezes
from tests.models.api_server import KEYS, Server
from tests.models.test_api import _order, world  # noqa: F401  (the module's world fixture: models, Feast, merchants)

pytestmark = pytest.mark.slow  # trains two models and starts a server


@pytest.fixture(scope="module")
def frozen_env(world, tmp_path_factory):  # noqa: F811
    """A server whose policy reads the freezes published in a tmp workbench state folder."""
    root = tmp_path_factory.mktemp("freeze-api")
    configs = root / "configs"
    shutil.copytree(config.config_dir(), configs)
    policy = yaml.safe_load((configs / "policy.yaml").read_text())
    state = root / "workbench"
    policy["freezes"] = {"snapshot": str(state / "published" / "freezes.json"), "outcome": "decline"}
    (configs / "policy.yaml").write_text(yaml.safe_dump(policy))
    srv = Server(
        {"MLFLOW_TRACKING_URI": world["uri"], "CLEARLINE_CONFIG_DIR": str(configs)},
        [
            "--feast-dir",
            world["feast_dir"],
            "--decisions",
            str(root / "decisions.db"),
            "--merchants",
            str(world["root"] / "world" / "entities" / "merchants.parquet"),
            "--workers",
            "2",
        ],
    )
    yield srv, state
    srv.stop()


def _two_merchants(world) -> tuple[tuple[dict, str], tuple[dict, str]]:  # noqa: F811
    """The latest order on terms, and the latest of another merchant."""
    first = _order(world, 0)
    n = 1
    while _order(world, n)[0]["merchant_id"] == first[0]["merchant_id"]:
        n += 1
    return first, _order(world, n)


def _ask(server: Server, order: tuple[dict, str], tag: str) -> dict:
    """The order asked again as a new order (its own order_id): decided afresh."""
    body, tenant = order
    asked = body | {"order_id": f"{body['order_id']}-{tag}"}
    status, got, _ = server.call("POST", "/v1/decisions", asked, KEYS[tenant])
    assert status == 200, got
    return got


def _as_decided(record: dict) -> tuple:
    return (
        record["decision"],
        record["credit_limit"],
        record["policy_reasons"],
        record["score"],
        record["model"],
        record["band"],
    )


def test_a_frozen_merchant_is_declined_with_the_reason_and_a_lift_restores_it_without_a_restart(
    world,  # noqa: F811
    frozen_env,
):
    server, state = frozen_env
    held, other = _two_merchants(world)
    merchant = held[0]["merchant_id"]
    before = {name: _ask(server, order, "before") for name, order in (("held", held), ("other", other))}
    assert server.call("GET", "/health")[1]["freezes"]["active"] == 0
    assert all("frozen_merchant" not in r["policy_reasons"] for r in before.values())

    workbench_freezes.publish(
        state,
        [
            {
                "kind": "merchant",
                "target": merchant,
                "tenant": held[1],
                "reason": "suspected account takeover",
                "frozen_by": "alice",
                "frozen_at": "2026-12-06T23:30:00+00:00",
            }
        ],
    )
    for i in range(4):  # two workers: each reads the snapshot it finds replaced
        got = _ask(server, held, f"frozen{i}")
        assert got["decision"] == "decline" and got["credit_limit"]["minor"] == 0
        assert got["policy_reasons"] == ["frozen_merchant", *before["held"]["policy_reasons"]]
        assert (got["score"], got["model"], got["band"]) == (
            before["held"]["score"],
            before["held"]["model"],
            before["held"]["band"],
        )  # the model was still asked, and its answer is recorded beside the freeze
        stored = server.call("GET", f"/v1/decisions/{got['decision_id']}", key=KEYS[held[1]])[1]
        assert stored == got  # recorded so
        assert _as_decided(_ask(server, other, f"frozen{i}")) == _as_decided(before["other"])  # untouched
    assert server.call("GET", "/health")[1]["freezes"]["active"] == 1

    workbench_freezes.publish(state, [])  # lifted
    for i in range(4):
        assert _as_decided(_ask(server, held, f"lifted{i}")) == _as_decided(before["held"])
    assert server.call("GET", "/health")[1]["freezes"]["active"] == 0
