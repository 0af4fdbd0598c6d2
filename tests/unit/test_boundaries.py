"""The package boundaries of ARCHITECTURE.md, checked on the source (ast), not by review.

- ``hacontrol/ipvs/`` imports nothing from ``vrrp/``, directly or through another module: the
  role the sync daemon should have is decided above it. Nor does it import pyroute2: IPVS has
  one transport, our own codec in ``hacontrol/ipvs/netlink.py``.
- ``vrrp/`` and ``healthcheck/`` import nothing from ``hacontrol/``, nor from each other.

Every import statement counts, including those inside functions (a lazy import still couples).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("hacontrol", "vrrp", "healthcheck")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, package: list[str]) -> set[str]:
    """Every module an import statement in ``source`` names (relative to ``package``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # "from pkg import mod" may name a submodule.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(path: Path) -> set[str]:
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    return imports_in(path.read_text(), package)


def source_of(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable(start: list[Path]) -> dict[str, str]:
    """Every module imported from ``start``, transitively through our own packages:
    module -> the module that imported it first (to explain a violation)."""
    seen: dict[str, str] = {}
    todo = [(module_name(p), p) for p in start]
    done: set[str] = set()
    while todo:
        name, path = todo.pop()
        if name in done:
            continue
        done.add(name)
        for imported in sorted(imports_of(path)):
            seen.setdefault(imported, name)
            if imported.split(".")[0] in OUR_PACKAGES:
                src = source_of(imported)
                if src is not None:
                    todo.append((imported, src))
    return seen


def violations(start_dir: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sorted((ROOT / start_dir).rglob("*.py"))
    assert files, start_dir
    return sorted(
        f"{module} (imported by {importer})"
        for module, importer in reachable(files).items()
        if module.split(".")[0] in forbidden
    )


@pytest.mark.parametrize(
    ("start_dir", "forbidden"),
    [
        ("hacontrol/ipvs", ("vrrp", "pyroute2")),
        ("vrrp", ("hacontrol", "healthcheck")),
        ("healthcheck", ("hacontrol", "vrrp")),
    ],
)
def test_package_imports_nothing_forbidden(start_dir: str, forbidden: tuple[str, ...]) -> None:
    assert violations(start_dir, forbidden) == []


def test_the_checker_can_fail() -> None:
    # hacontrol/lvs.py takes vrrp's State (it decides the sync-daemon role): seen from
    # hacontrol/ as a whole, that is a vrrp import, reached through hacontrol.daemon too.
    found = violations("hacontrol", ("vrrp",))
    assert any(v.startswith("vrrp.types (imported by ") for v in found), found
    assert "hacontrol.ipvs.netlink" in reachable([ROOT / "hacontrol" / "daemon.py"])
    # Lazy (function-level) and relative imports count.
    lazy = "def f():\n    from vrrp import fsm\n    import pyroute2.netlink\n    from . import x\n"
    assert imports_in(lazy, ["hacontrol", "ipvs"]) == {
        "vrrp",
        "vrrp.fsm",
        "pyroute2.netlink",
        "hacontrol.ipvs",
        "hacontrol.ipvs.x",
    }


def test_config_reaches_no_runtime() -> None:
    # Config modules are values: checking a file loads neither the daemon's runtime nor a
    # netlink library (config.py once imported lvs.py for model_problems, a cycle).
    config_files = [ROOT / "hacontrol" / name for name in ("config.py", "config_lvs.py")]
    found = reachable(config_files)
    forbidden = ("hacontrol.lvs", "hacontrol.daemon", "hacontrol.ipvs.netlink", "pyroute2")
    assert [m for m in found if m.startswith(forbidden)] == []
    # desired.py, which config.py asks what the IPVS model refuses, names config's types
    # for the type checker only.
    desired = (ROOT / "hacontrol" / "desired.py").read_text()
    assert "if TYPE_CHECKING:\n" in desired
    for line in desired.splitlines():
        if line.startswith(("from hacontrol.config", "import hacontrol.config")):
            raise AssertionError(f"desired.py imports config at run time: {line}")
