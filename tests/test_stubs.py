"""The hand-written .pyi stubs of the compiled modules match the runtime (mypy.stubtest)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("SLA_PLANNER_NO_EXTENSIONS", "") not in ("", "0"),
    reason="SLA_PLANNER_NO_EXTENSIONS is set: the compiled modules are not in use",
)

# one stubtest run per group (each run costs several seconds of mypy start-up); a failure is
# reported against the module it names
GROUPS = {
    "cython": ("sla_planner._cy.interp", "sla_planner._cy.kalman"),
    "rust": ("sla_planner._native",),
}
MODULE_GROUP = {module: group for group, modules in GROUPS.items() for module in modules}
# runtime names stubtest reports that no stub can express; none needed so far
ALLOWLIST: tuple[str, ...] = ()


def _run_stubtest(modules: tuple[str, ...], tmp: Path) -> str:
    allowlist = tmp / "stubtest-allowlist.txt"
    allowlist.write_text("".join(f"{line}\n" for line in ALLOWLIST))
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *modules, "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=300,
    )
    return "" if result.returncode == 0 else result.stdout + result.stderr


@pytest.fixture(scope="module")
def stubtest_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """stubtest output per group ("" when clean); importable modules only."""
    pytest.importorskip("mypy.stubtest", reason="mypy is not installed (pip install .[test])")
    out = {}
    for group, modules in GROUPS.items():
        present = tuple(m for m in modules if _importable(m))
        out[group] = _run_stubtest(present, tmp_path_factory.mktemp(group)) if present else ""
    return out


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("module", sorted(MODULE_GROUP))
def test_stub_matches_runtime(module: str, stubtest_output: dict[str, str]) -> None:
    if not _importable(module):
        pytest.skip(f"{module} is not built")
    output = stubtest_output[MODULE_GROUP[module]]
    mine = [
        block
        for block in re.split(r"\n(?=error: )", output)
        if re.match(rf"error: {re.escape(module)}(\.|\s)", block)
    ]
    assert not mine, f"stubtest {module}:\n" + "\n".join(mine)
    unattributed = output and not any(
        re.search(rf"error: {re.escape(m)}(\.|\s)", output) for m in GROUPS[MODULE_GROUP[module]]
    )
    assert not unattributed, f"stubtest could not check {module}:\n{output}"
