"""Configuration loading: the shipped defaults, a folder of the user's own, and errors
that name the file and the key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearline import config


@pytest.fixture
def own_configs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARLINE_CONFIG_DIR", str(tmp_path))
    config._load.cache_clear()
    yield tmp_path
    config._load.cache_clear()


def test_the_defaults_ship_in_the_package():
    assert config.default_dir().name == "configs"
    assert (config.default_dir() / "ledger.yaml").is_file()
    assert config.load("ledger")["topic"]


def test_a_missing_file_and_a_missing_key_name_the_file_and_the_key(own_configs):
    with pytest.raises(config.ConfigError, match=r"configuration file not found: .*ledger\.yaml"):
        config.load("ledger")
    (own_configs / "ledger.yaml").write_text("recovery:\n  partitions: 2\n")
    cfg = config.load("ledger")
    with pytest.raises(config.ConfigError, match=r"ledger\.yaml: missing key recovery\.snapshot_interval_s$"):
        cfg["recovery"]["snapshot_interval_s"]
    with pytest.raises(KeyError):  # callers that fall back on a missing key still can
        cfg["state_dir"]
    assert cfg.get("state_dir", "default") == "default"


@given(st.one_of(st.text(max_size=5), st.booleans(), st.floats(allow_nan=False), st.none()))
def test_a_count_is_a_whole_number_and_nothing_else(value):
    section = config._sections({"batch": {"size": value}}, config.default_dir() / "x.yaml")["batch"]
    with pytest.raises(config.ConfigError, match=r"x\.yaml: batch\.size: .* is not a whole number"):
        config.typed(section, "size", int)


@given(st.integers(), st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_pass_as_themselves(count, number):
    section = config._sections({"n": count, "x": number}, config.default_dir() / "x.yaml")
    assert config.typed(section, "n", int) == count
    assert config.typed(section, "x", float) == number
    assert config.typed(section, "n", float) == float(count)


def test_relative_state_folders_are_taken_from_clearline_home_else_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLEARLINE_HOME", raising=False)
    assert config.state_path("var/ledger") == tmp_path / "var/ledger"
    monkeypatch.setenv("CLEARLINE_HOME", str(tmp_path / "home"))
    assert config.state_path("var/ledger") == tmp_path / "home" / "var/ledger"
    assert config.state_path("/abs/ledger") == config.Path("/abs/ledger")
