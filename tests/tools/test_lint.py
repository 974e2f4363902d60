"""The code stays ruff- and mypy-clean (`make lint` run as part of the suite, so CI holds it), and
the daemon's own modules never import the tools shipped beside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The tools: the printer emulator and the test-and-demo harness. Production never needs them.
TOOLS = ("kprintd.emulator", "kprintd.harness")
# The one way in: `kprintd emulator ...` hands its arguments to the emulator's own command line,
# importing it only then (a function-level import in kprintd/cli.py's main()).
ALLOWED = {("kprintd/cli.py", "kprintd.emulator")}


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "kprintd", "tests", "bench"],
        ["ruff", "format", "--check", "kprintd", "tests", "bench"],
        pytest.param(["mypy"], marks=pytest.mark.slow),
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_lint_is_clean(command: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def imported_modules(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in the file; `from kprintd import emulator`
    counts as kprintd.emulator."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
            found += [(f"{node.module}.{a.name}", id(node) in top_level) for a in node.names]
    return found


def is_tool(module: str) -> str | None:
    return next((t for t in TOOLS if module == t or module.startswith(f"{t}.")), None)


def test_the_daemon_never_imports_the_tools() -> None:
    core = [
        path
        for path in sorted((REPO / "kprintd").rglob("*.py"))
        if path.relative_to(REPO / "kprintd").parts[0] not in ("emulator", "harness")
    ]
    assert REPO / "kprintd" / "daemon.py" in core
    wrong = []
    for path in core:
        name = path.relative_to(REPO).as_posix()
        for module, top_level in imported_modules(path):
            tool = is_tool(module)
            if tool and not ((name, tool) in ALLOWED and not top_level):
                wrong.append(f"{name} imports {module}")
    assert wrong == [], "the daemon's modules import the tools"


def test_the_emulator_does_not_import_the_harness() -> None:
    wrong = [
        f"{path.relative_to(REPO).as_posix()} imports {module}"
        for path in sorted((REPO / "kprintd" / "emulator").rglob("*.py"))
        for module, _ in imported_modules(path)
        if is_tool(module) == "kprintd.harness"
    ]
    assert wrong == []


def test_importing_the_daemon_loads_no_tool() -> None:
    """What `kprintd run` imports, in a fresh interpreter: none of the tools come along."""
    probe = (
        "import sys, kprintd.cli, kprintd.daemon, kprintd.admin, kprintd.monitor, kprintd.migrate;"
        f"print(sorted(m for m in sys.modules if m.startswith({TOOLS!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
