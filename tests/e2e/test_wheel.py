"""Clearline as a user gets it: the wheel, installed into a fresh virtual environment
outside the checkout, run from a folder of its own against the real broker.

The fresh environment borrows the project environment's third-party packages through a
path file (dependencies only: the editable install's finder is not loaded that way), so
the test installs no copy of Feast and MLflow, yet nothing of the checkout is importable:
`clearline` comes from the wheel or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml

from tests import REPO_ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    "out",
    "var",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    "mlruns",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the checkout (a build leaves nothing in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (built,) = (root / "dist").glob("clearline-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its bin folder."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    fresh_site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    (fresh_site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    return venv / "bin"


def test_the_wheel_installs_one_top_level_name_with_its_configs_and_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "clearline",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }
    for shipped in ("clearline/configs/ledger.yaml", "clearline/configs/tenants.yaml",
                    "clearline/configs/kafka-runtime-pom.xml", "clearline/recon/report/templates/variances.html.j2",
                    "clearline/models/templates/backtest.html.j2", "clearline/pipelines/cli/__init__.py"):  # fmt: skip
        assert shipped in names, f"{shipped} is not in the wheel"
    in_checkout = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "pipelines").rglob("*.py")}
    in_wheel = {n.removeprefix("clearline/") for n in names if n.startswith("clearline/pipelines/")}
    assert in_checkout <= in_wheel, f"modules missing from the wheel: {sorted(in_checkout - in_wheel)}"


def test_the_installed_command_line_works_from_a_folder_of_its_own(installed, kafka_bootstrap, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARLINE_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLEARLINE_TOPIC_PREFIX": f"wheel.{uuid.uuid4().hex[:8]}.",
        "PATH": f"{installed}{os.pathsep}{env.get('PATH', '')}",
    }

    def clearline(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(installed / "clearline"), *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        if ok:
            assert done.returncode == 0, f"clearline {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    where = subprocess.run(
        [str(installed / "python"), "-c", "import clearline; print(clearline.__file__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(REPO_ROOT) not in where and str(installed.parent) in where, where

    assert "generate" in clearline("--help").stdout

    written = json.loads(clearline("init", "cfg", "--json").stdout)
    assert "ledger.yaml" in written["files"] and (work / "cfg" / "world.yaml").is_file()
    again = clearline("init", "cfg", ok=False)
    assert again.returncode == 2 and again.stderr.startswith("error:") and "already has" in again.stderr

    env["CLEARLINE_CONFIG_DIR"] = str(work / "cfg")
    manifest = json.loads(
        clearline("generate", "--days", "5", "--merchants", "3", "--seed", "1", "--out", "w", "--json").stdout
    )
    clearline("kafka", "up", "--json")
    produced = json.loads(clearline("produce", "w", "--json").stdout)
    assert produced["failed"] == 0 and produced["delivered"] == manifest["events"] > 0
    clearline("ledger", "run", "--once", "--metrics-port", "0")
    assert (work / "var" / "ledger").is_dir(), "relative state folders are taken from the working directory"
    check = json.loads(clearline("ledger", "check", "--json").stdout)
    openings = len(yaml.safe_load((work / "cfg" / "platform.yaml").read_text())["bank_accounts"])
    assert check["ok"] and check["consumed"] == produced["delivered"] + openings == check["posted"], check

    # A configuration that lost a key, or holds a word where a number belongs, is one
    # `error:` line naming the file and the key.
    ledger_yaml = work / "cfg" / "ledger.yaml"
    original = ledger_yaml.read_text()
    ledger_yaml.write_text("\n".join(line for line in original.splitlines() if not line.startswith("state_dir")))
    broken = clearline("ledger", "run", "--once", ok=False)
    assert broken.returncode == 2, broken.stderr
    assert broken.stderr.strip().splitlines() == [f"error: {ledger_yaml}: missing key state_dir"], broken.stderr
    ledger_yaml.write_text(original.replace("batch_size:", "batch_size: lots #", 1))
    broken = clearline("ledger", "run", "--once", ok=False)
    assert broken.returncode == 2, broken.stderr
    assert broken.stderr.strip().splitlines() == [f"error: {ledger_yaml}: batch_size: 'lots' is not a whole number"]
