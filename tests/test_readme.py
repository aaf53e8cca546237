"""The README's Quick start stays true: two commands, and CI runs exactly the test command."""

from __future__ import annotations

import re

from conftest import REPO


def _quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_has_two_commands():
    cmds = _quick_start_commands()
    assert len(cmds) == 2
    assert "mulegraph run" in cmds[0] and "sample_data" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _quick_start_commands()[1] in [line.strip() for line in ci]


def test_quick_start_paths_exist():
    for token in _quick_start_commands()[0].split():
        if token.startswith("sample_data/"):
            assert (REPO / token).is_file(), token


def test_feature_table_is_the_generated_one():
    """The README lists every feature as ``mulegraph features --list --markdown`` prints it (in a
    fresh process: tests register features of their own)."""
    import subprocess
    import sys

    table = subprocess.run([sys.executable, "-m", "mulegraph", "features", "--list", "--markdown"], capture_output=True,
                           text=True, check=True, cwd=REPO).stdout
    assert table.count("\n| `") > 50
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert table.strip() in text, "regenerate the README's feature table: mulegraph features --list --markdown"
