"""Capture can never crash the process, whatever the values do while they are captured (issue 11 §0).

Each shape runs in its own interpreter, with a tiny GIL switch interval so that the mutating
thread runs as often as possible; on the code before the fix every one of them ended in SIGSEGV
within these many rounds (``PYTHONPATH=<old checkout> python tests/capture/capture_races/shapes.py …``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "capture_races", "shapes.py")


@pytest.mark.parametrize(
    ("shape", "rounds"),
    [("pydantic_history", 1500), ("decimal_list", 3000), ("decimal_dict", 3000), ("hook", 1500)],
)
def test_values_mutated_during_capture_are_recorded_without_crashing(shape: str, rounds: int) -> None:
    done = subprocess.run(
        [sys.executable, SCRIPT, shape, str(rounds)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["events", str(rounds)]
