"""Domain code never loads the socket server's libraries: each domain package, every
module of it imported in a fresh interpreter, leaves websockets (and, for the kernel,
redis, aiohttp and aiortc) out of ``sys.modules``. The import contracts in
pyproject.toml say the same statically; this is what a process really loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, pkgutil, sys
package = importlib.import_module({package!r})
for module in pkgutil.walk_packages(package.__path__, {package!r} + "."):
    importlib.import_module(module.name)
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({forbidden!r}))
print(",".join(loaded))
"""


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("kernel", ("websockets", "redis", "aiohttp", "aiortc", "av")),
        ("api", ("websockets", "redis")),
        ("signalling", ("websockets", "redis")),
        ("recordings", ("websockets", "redis")),
    ],
)
def test_a_domain_package_loads_no_transport_library(
    package: str, forbidden: tuple[str, ...]
) -> None:
    probe = PROBE.format(package=package, forbidden=forbidden)
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{package} loaded {done.stdout.strip()}"


def test_the_probe_sees_what_the_server_loads() -> None:
    """The same probe on the core: it does load websockets (the probe can fail)."""
    probe = PROBE.format(package="rtc_server", forbidden=("websockets",))
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "websockets"
