"""What every text field a client sends must satisfy, whatever else its schema says."""

from __future__ import annotations

# U+0000 anywhere: PostgreSQL text cannot store it (SQLite can), so without this the same
# input is kept on one backend and a 500 on the other. Refused alike as invalid input (422).
NO_NUL = r"^[^\x00]*\Z"
