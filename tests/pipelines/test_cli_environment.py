"""What the command line sets for every command before it runs: numpy's huge-page advice
off (see `clearline.pipelines.cli.main`), unless the user set it."""

from __future__ import annotations

import os

from click.testing import CliRunner

from clearline.pipelines.cli import main


def test_numpys_huge_page_advice_is_off_for_every_command_unless_the_user_set_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "restored after the test")
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
    done = CliRunner().invoke(main, ["init", str(tmp_path / "a")])
    assert done.exit_code == 0, done.output
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"

    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    done = CliRunner().invoke(main, ["init", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "1"
