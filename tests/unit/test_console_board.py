"""The admin console's board of live calls (``rtc_server/console/static/board.js``: the
table's state from call events, their replay and ``admin.calls.active``), run by Node's
own test runner on ``tests/console/board.test.mjs``: no browser, no server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TEST = Path(__file__).parents[1] / "console" / "board.test.mjs"


def test_the_board_of_live_calls() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: the console's board tests need Node.js 20+")
    result = subprocess.run(
        [node, "--test", str(TEST)], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 4" in result.stdout, result.stdout
