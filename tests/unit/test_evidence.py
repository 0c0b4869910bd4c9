"""The figures in docs/reliability.md come from a run through this recorder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.evidence import BEGIN, END, Evidence, write


def test_figures_add_up_and_merge_into_the_saved_run(tmp_path: Path) -> None:
    found = Evidence()
    found.record("redis_kill", answers=25, missing=0)
    found.record("redis_kill", answers=25, missing=0, note="aof")
    saved = tmp_path / "evidence.json"
    saved.write_text(json.dumps({"older": {"inputs": 7}, "redis_kill": {"answers": 1}}))
    found.save(saved)
    assert json.loads(saved.read_text()) == {
        "older": {"inputs": 7},
        "redis_kill": {"answers": 50, "missing": 0, "note": "aof"},
    }


def test_the_document_table_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    saved = tmp_path / "evidence.json"
    saved.write_text(
        json.dumps(
            {
                "ws_fuzz": {"frames_tried": 1200, "server_errors": 0},
                "churn": {"deltas_checked": 9000, "missing": 0},
                "redis_kill": {"deltas_checked": 1500, "missing": 0, "doubled": 0},
            }
        )
    )
    document = tmp_path / "reliability.md"
    document.write_text(f"# Reliability\n{BEGIN}\nstale\n{END}\nafter\n")
    write(document, saved)
    text = document.read_text()
    assert "stale" not in text
    assert "| `ws_fuzz` | frames tried 1,200, server errors 0 |" in text
    assert "3 guarantees checked; over all of them: deltas checked 10,500, missing 0," in text
    assert text.endswith(f"{END}\nafter\n")
