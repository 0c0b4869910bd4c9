"""docs/configuration.md is generated from the settings code and cannot drift from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chatrt import config_reference
from chatrt.settings import variable_names

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_every_variable_has_a_meaning_and_nothing_else_does() -> None:
    assert set(config_reference.MEANINGS) == set(variable_names())


def test_the_docs_hold_the_current_table() -> None:
    document = DOCS.read_text(encoding="utf-8")
    assert config_reference.rendered_into(document) == document, (
        "docs/configuration.md is stale: run "
        "`chatrt config-reference --write docs/configuration.md`"
    )
    for name in variable_names():
        assert f"| `{name}` |" in document


def test_the_command_prints_the_table_and_updates_a_stale_file(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "chatrt", "config-reference"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    assert printed == config_reference.table()
    stale = tmp_path / "configuration.md"
    stale.write_text(
        f"intro\n{config_reference.BEGIN}\n| old |\n{config_reference.END}\nafter\n",
        encoding="utf-8",
    )
    assert config_reference.write(stale)
    assert stale.read_text(encoding="utf-8") == (
        f"intro\n{config_reference.BEGIN}\n{config_reference.table()}{config_reference.END}\nafter\n"
    )
    assert not config_reference.write(stale), "a current file is left alone"
