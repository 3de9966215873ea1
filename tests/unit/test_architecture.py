"""The structure docs/architecture.md describes: arrows one way, one composition root.

Imports are read from the source (every ``import``, function-level ones included, plus the
parent packages Python imports on the way), so a cycle hidden inside a function fails here.
"""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sidecar", "subscription_handlers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(name: str) -> set[str]:
    """Our modules that ``name`` imports anywhere in its source, with their parents."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.add(candidate if candidate in MODULES else base)
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    found = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first...
            prefix = ".".join(parts[:i])
            # ...unless they are this module's own packages, already being imported
            if prefix in MODULES and prefix != name and prefix not in own_packages:
                found.add(prefix)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def test_there_are_modules_to_check():
    assert "sidecar.wiring" in GRAPH and "subscription_handlers.adapters.queue" in GRAPH


def test_no_import_cycles_function_level_imports_included():
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_mapping_core_imports_nothing_else_of_ours():
    for name, deps in GRAPH.items():
        if name.startswith("sidecar.core.mapping"):
            outside = {
                d for d in deps if not d.startswith("sidecar.core.mapping") and d != "sidecar"
            }
            assert not outside, f"{name} imports {outside}"


def layer_of(name: str) -> str:
    """The layer a module belongs to (docs/architecture.md, "The layers")."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "package"
    if parts[1] in ("core", "ports", "settings", "adapters", "usecases", "entry", "wiring"):
        return parts[1]
    return {"services": "entry", "samples": "tools"}.get(parts[1], "?")


#: Which layers each layer may import (besides itself and the bare packages).
ALLOWED = {
    "core": set(),  # the bottom: rules need no settings (they take plain values, Protocols)
    "settings": {"core"},  # validated with the core's value rules (FHIR ids, QIDO values)
    "ports": {"core"},
    "adapters": {"core", "ports", "settings"},
    "usecases": {"core", "ports", "settings"},
    # entry points may name adapters' types (the worker runs huey's consumer); only the
    # root builds them (test_only_the_composition_root_builds_adapters)
    "entry": {"core", "ports", "settings", "usecases", "adapters"},
    "wiring": {"core", "ports", "settings", "usecases", "entry", "adapters"},
    "tools": {"core", "ports", "settings", "usecases", "adapters", "wiring", "entry"},
    "package": {"wiring"},  # python -m sidecar
}


def test_every_module_sits_in_a_layer():
    unplaced = [name for name in GRAPH if layer_of(name) == "?"]
    assert not unplaced, unplaced


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_arrows_point_inwards(layer):
    """core <- ports <- adapters, use cases <- entry points <- the composition root: a use
    case never imports an adapter, an entry point never an adapter or the root."""
    wrong = {
        (name, dep)
        for name, deps in GRAPH.items()
        if layer_of(name) == layer
        for dep in deps
        if layer_of(dep) not in ALLOWED[layer] | {layer, "package"}
    }
    assert not wrong, sorted(wrong)


def test_sidecar_imports_subscription_handlers_only_in_the_composition_root():
    """One direction between the packages: subscription_handlers may use sidecar; sidecar
    reaches subscription_handlers only through sidecar/wiring (every import is read,
    function-level ones included)."""
    wrong = sorted(
        (name, dep)
        for name, deps in GRAPH.items()
        if name.split(".")[0] == "sidecar" and layer_of(name) != "wiring"
        for dep in deps
        if dep.split(".")[0] == "subscription_handlers"
    )
    assert not wrong, wrong


#: Libraries that do I/O: the pure core and the use cases reach them only through ports.
IO_LIBRARIES = {
    "requests",
    "urllib3",
    "fhirpy",
    "dicomweb_client",
    "huey",
    "redis",
    "flask",
    "sqlite3",
    "socket",
    "subprocess",
    "gunicorn",
    "http",
    "urllib.request",
}


def _imported_libraries(path: Path) -> set[str]:
    """The I/O libraries (or their I/O modules, ``urllib.request``) a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found & IO_LIBRARIES


@pytest.mark.parametrize("layer", ["core", "ports", "usecases"])
def test_no_io_library_in_the_inner_layers(layer):
    offenders = sorted(
        (name, lib)
        for name, path in MODULES.items()
        if layer_of(name) == layer
        for lib in _imported_libraries(path)
    )
    assert not offenders, offenders


def test_only_the_composition_root_builds_adapters():
    """FhirStore(...), DicomwebPacs(...), HueySyncQueue(...) and Registrar(...) are constructed
    in sidecar/wiring.py alone (tests and benchmarks aside)."""
    pattern = re.compile(
        r"\b(FhirStore|DicomwebPacs|HueySyncQueue|Registrar|FetchImaging|OrthancChanges"
        r"|Checkpoint\.load|Backfill)\("
    )
    builders = {
        name
        for name, path in MODULES.items()
        if any(
            pattern.search(line) and not line.lstrip().startswith(("class ", "def ", "#"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
    }
    assert builders == {"sidecar.wiring.root"}


#: Modules allowed to read the process environment: the settings loader, prometheus's
#: multiprocess switch, and the stand-alone developer tools with their own flags.
ENVIRONMENT_READERS = {
    "sidecar.settings.sources",
    "sidecar.entry.metrics",
    "sidecar.samples.__main__",
    "sidecar.samples.demo",
}


def test_library_modules_read_no_environment():
    readers = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            attribute = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
            imported = isinstance(node, ast.ImportFrom) and (
                node.module == "os" and {a.name for a in node.names} & {"environ", "getenv"}
            )
            aliased = isinstance(node, ast.Import) and any(
                a.name == "os" and a.asname for a in node.names
            )
            if attribute or imported or aliased:
                readers.add(name)
    assert readers <= ENVIRONMENT_READERS, readers - ENVIRONMENT_READERS


def test_no_private_api_of_the_http_libraries():
    private = re.compile(r"\._(http_get|do_request|fetch_resource|build_request_url)\b")
    offenders = [
        name for name, path in MODULES.items() if private.search(path.read_text(encoding="utf-8"))
    ]
    assert not offenders


def test_no_settings_read_outside_the_root():
    offenders = [
        name
        for name, path in MODULES.items()
        if "from_env(" in path.read_text(encoding="utf-8")
        or (
            "load_settings(" in path.read_text(encoding="utf-8")
            and name
            not in {
                "sidecar.settings",
                "sidecar.settings.sources",
                "sidecar.wiring.root",
                "sidecar.wiring.server",
            }
        )
    ]
    assert not offenders


def test_readme_what_is_where_matches_the_tree():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What is where", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (.+?) \|", section, re.M)
    paths = [p for cell in first_cells for p in re.findall(r"`([^`]+)`", cell)]
    assert len(paths) > 10
    for path in paths:
        assert (ROOT / path.rstrip("/")).exists() or "*" in path, path


def test_architecture_page_names_every_module():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        name
        for name, path in MODULES.items()
        if path.name != "__init__.py"
        and not name.startswith(("sidecar.core.mapping.", "sidecar.samples."))
        and name.rsplit(".", 1)[-1] not in page
    ]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_module_imports(name):
    """A module no unit test imports (the worker's entry point) still loads: a name moved
    elsewhere fails here, not in the first process that needs it."""
    import importlib

    importlib.import_module(name)
