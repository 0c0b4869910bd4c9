"""Figures the fault, fuzz and security tests measured, for ``docs/reliability.md``.

A test takes the ``evidence`` fixture and records what it checked::

    evidence.record("redis_kill", answers=50, deltas_checked=12_345, missing=0, doubled=0)

At the end of the run the figures go to ``build/evidence.json`` (one entry per guarantee,
the newest run's only) and to the terminal summary. ``python -m tests.support.evidence
--write docs/reliability.md`` copies them into the document's figures table, so the numbers
there are the ones a real run produced, never typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

Figure = int | float | str
EVIDENCE_FILE = Path(__file__).resolve().parents[2] / "build" / "evidence.json"
BEGIN = "<!-- evidence:begin -->"
END = "<!-- evidence:end -->"


@dataclass
class Evidence:
    """Figures by guarantee name; a guarantee recorded twice in one run adds up its numbers."""

    figures: dict[str, dict[str, Figure]] = field(default_factory=dict)

    def record(self, guarantee: str, **figures: Figure) -> None:
        entry = self.figures.setdefault(guarantee, {})
        for name, value in figures.items():
            known = entry.get(name)
            if isinstance(value, int | float) and isinstance(known, int | float):
                entry[name] = known + value
            else:
                entry[name] = value

    def save(self, path: Path = EVIDENCE_FILE) -> None:
        """Merge into the file: a partial run updates only what it measured."""
        saved: dict[str, dict[str, Figure]] = {}
        if path.exists():
            saved = json.loads(path.read_text())
        saved.update(self.figures)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")

    def lines(self) -> list[str]:
        return [
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
            for name, values in sorted(self.figures.items())
        ]


def _cell(value: Figure) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


# Summed over every guarantee, for the line above the table.
TOTALS = ("deltas_checked", "missing", "doubled", "left_streaming", "server_errors", "leaks")


def totals(figures: dict[str, dict[str, Figure]]) -> str:
    sums = dict.fromkeys(TOTALS, 0)
    for values in figures.values():
        for name in TOTALS:
            value = values.get(name)
            if isinstance(value, int):
                sums[name] += value
    cells = ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in sums.items())
    return f"{len(figures)} guarantees checked; over all of them: {cells}."


def table(figures: dict[str, dict[str, Figure]]) -> str:
    rows = [totals(figures), "", "| Guarantee | Figures from the last run |", "|---|---|"]
    for name, values in sorted(figures.items()):
        cells = ", ".join(f"{k.replace('_', ' ')} {_cell(v)}" for k, v in sorted(values.items()))
        rows.append(f"| `{name}` | {cells} |")
    return "\n".join(rows)


def write(document: Path, path: Path = EVIDENCE_FILE) -> None:
    figures = json.loads(path.read_text())
    text = document.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{document} has no {BEGIN} ... {END} section")
    document.write_text(pattern.sub(f"{BEGIN}\n{table(figures)}\n{END}", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="the document whose figures table to update")
    args = parser.parse_args()
    if args.write:
        write(args.write)
    else:
        sys.stdout.write(table(json.loads(EVIDENCE_FILE.read_text())) + "\n")


if __name__ == "__main__":
    main()
