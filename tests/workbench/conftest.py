"""A real deployment for the workbench to read: a generated world's events produced to
fresh topics on the real broker, the ledger flow run over them (its Parquet snapshots and
event archive), the world's reports and statements dropped into the recon flow's inbox and
`clearline recon run --once` (intake's validated lines, the variance store and its
published snapshot). Made once per test session; tests that change variances work on a
copy of the recon state folder (`deployment_copy`)."""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack

import pytest

from clearline.freezes import Freezes
from clearline.pipelines.workbench.settings import WorkbenchSettings
from clearline.pipelines.world.generate import WorldOptions, generate
from tests.pipelines.ledger_harness import private_configs
from tests.pipelines.test_recon_flow import Deployment, drop, world_files
from tests.workbench.web import add_users

# The platform's payout run held a merchant's payouts from the world's second week: the
# deployment's ledger holds them (payouts_held), and its bank statements show none of them.
HELD_MERCHANT = "m_00002"
DEPLOYMENT_FREEZES = Freezes.of(
    [{"kind": "merchant", "target": HELD_MERCHANT, "frozen_at": "2026-01-14T00:00:00+00:00"}]
)


@pytest.fixture(scope="session")
def deployment(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("workbench-deployment")
    world = root / "world"
    generate(WorldOptions(days=30, merchants=6, seed=31, freezes=DEPLOYMENT_FREEZES), world)
    with ExitStack() as stack:
        dep = Deployment(stack, kafka_bootstrap, root)
        started = time.monotonic()
        dep.produce(world)
        drop(world_files(world), dep.inbox)
        dep.run_once()
        print(f"[workbench deployment] {time.monotonic() - started:.1f} s")
        yield dep, world


@pytest.fixture
def deployment_copy(deployment, tmp_path) -> WorkbenchSettings:
    """Settings over the deployment's ledger and a private copy of its recon state (the
    variance store and its snapshot), with a fresh workbench state folder."""
    dep, _ = deployment
    recon = tmp_path / "recon"
    shutil.copytree(dep.state, recon, ignore=shutil.ignore_patterns("flow"))
    return WorkbenchSettings.from_config(tmp_path / "workbench", recon, dep.ledger)


@pytest.fixture
def own_deployment(deployment, tmp_path, monkeypatch):
    """Copies of the deployment's ledger and recon state (with their flows' recovery, so a
    flow run on them resumes where the deployment's stopped), configs whose ledger topic is
    the deployment's events topic, and workbench settings over them."""
    dep, _ = deployment
    ledger, recon = tmp_path / "ledger", tmp_path / "recon"
    shutil.copytree(dep.ledger, ledger)
    shutil.copytree(dep.state, recon)
    monkeypatch.setenv("CLEARLINE_CONFIG_DIR", str(private_configs(tmp_path / "configs", topic=dep.events)))
    settings = WorkbenchSettings.from_config(tmp_path / "workbench", recon, ledger)
    add_users(
        settings,
        ("pat", "resolver", "platform"),
        ("amy", "approver", "platform"),
        ("tom", "approver", "rs_003"),
        ("rex", "resolver", "rs_003"),
    )
    return dep, settings, tmp_path
