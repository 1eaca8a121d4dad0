"""The folder tree is the architecture (docs/architecture.md): these tests keep it so.

- Imports between the parts of cds_hooks go one way (ALLOWED below; every import counts, also those
  inside functions): web -> pipeline -> engine, with hooks, packs, spine and auth below the pipeline.
- The parts below the web edge never import Flask or Werkzeug.
- The service never imports the EHR side (cds_hooks.sandbox) except web/app.py, inside the branch that
  registers the try-it page; an application built with try-it off leaves it unloaded.
- No module outside spine/ names spinal anatomy.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "cds_hooks"

# part -> the parts it may import ("" is the top level: config.py and errors.py, which import no part).
ALLOWED = {
    "": set(),
    "spine": {""},
    "packs": {""},
    "hooks": {""},
    "auth": {""},
    "engine": {""},
    "pipeline": {"", "engine", "hooks", "packs", "spine", "auth"},
    "audit": {"", "pipeline", "hooks", "auth"},
    "ops": {"", "audit", "pipeline", "engine", "hooks", "packs", "auth"},
    "web": {"", "ops", "audit", "pipeline", "engine", "hooks", "packs", "spine", "auth"},
    "sandbox": {"", "web", "pipeline", "hooks", "spine", "auth"},
    "cli": {"", "web", "sandbox", "ops", "audit", "pipeline", "engine", "hooks", "packs", "spine", "auth"},
}
# Parts that must not import Flask or Werkzeug (web/, ops/ logs.py, sandbox/ tryit.py and cli/ may).
NO_FLASK = ("pipeline", "engine", "hooks", "packs", "spine", "auth", "audit")
# The one import of cds_hooks.sandbox the service makes: web/app.py, inside `if config.tryit_enabled`.
SANDBOX_IMPORT_ALLOWED = {("web/app.py", "cds_hooks.sandbox.tryit")}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "audit" and "migrations" in rel.parts:
            continue  # Alembic's scripts (env.py imports the schema of its own part)
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.AST):
    """(imported module, line, at module level) for every import, including those inside functions."""
    top = set(id(node) for node in getattr(tree, "body", []))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: relative import; cds_hooks imports are absolute"
            for alias in node.names:  # `from cds_hooks.web import app` imports cds_hooks.web.app
                name = f"{node.module}.{alias.name}"
                yield (name if _is_module(name) else node.module), node.lineno, id(node) in top


def _is_module(name: str) -> bool:
    if not name.startswith("cds_hooks."):
        return False
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path.is_dir() or path.with_suffix(".py").is_file()


def _part(module: str) -> str:
    """cds_hooks.web.app -> "web"; cds_hooks.config -> ""."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def _part_of_file(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else ""


def test_imports_between_parts_go_one_way():
    wrong = []
    for rel, tree in _modules():
        here = _part_of_file(rel)
        for name, line, _ in _imports(tree):
            if not name.startswith("cds_hooks.") or (rel.as_posix(), name) in SANDBOX_IMPORT_ALLOWED:
                continue
            there = _part(name)
            if there != here and there not in ALLOWED[here]:
                wrong.append(f"cds_hooks/{rel}:{line} ({here or 'top level'}) imports {name} ({there or 'top level'})")
    assert not wrong, "imports against the architecture:\n" + "\n".join(wrong)


def test_the_allowed_edges_have_no_cycle():
    def visit(part: str, path: tuple[str, ...]):
        assert part not in path, f"cycle: {' -> '.join(path + (part,))}"
        for below in ALLOWED[part] - {part}:
            visit(below, path + (part,))

    for part in ALLOWED:
        visit(part, ())


def test_the_parts_below_the_web_edge_do_not_import_flask():
    wrong = []
    for rel, tree in _modules():
        if _part_of_file(rel) in NO_FLASK or _part_of_file(rel) == "":
            wrong += [
                f"cds_hooks/{rel}:{line} imports {name}"
                for name, line, _ in _imports(tree)
                if name.split(".")[0] in ("flask", "werkzeug")
            ]
    assert not wrong, "\n".join(wrong)


def test_the_service_does_not_import_the_sandbox():
    wrong = []
    for rel, tree in _modules():
        if _part_of_file(rel) in ("sandbox", "cli"):
            continue
        for name, line, top_level in _imports(tree):
            if name == "cds_hooks.sandbox" or name.startswith("cds_hooks.sandbox."):
                if (rel.as_posix(), name) not in SANDBOX_IMPORT_ALLOWED or top_level:
                    wrong.append(f"cds_hooks/{rel}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_command_line_imports_the_sandbox_only_inside_functions():
    tree = ast.parse((PACKAGE / "cli" / "__init__.py").read_text(encoding="utf-8"))
    assert not [name for name, _, top in _imports(tree) if top and name.startswith("cds_hooks.sandbox")]


def _loaded_sandbox_modules(tryit_enabled: bool) -> list[str]:
    code = (
        "import sys\n"
        "from cds_hooks.config import Config\n"
        "from cds_hooks.web.app import create_app\n"
        f"app = create_app(Config.development(tryit_enabled={tryit_enabled}, engine_workers=1))\n"
        "print(sorted(m for m in sys.modules if m == 'cds_hooks.sandbox' or m.startswith('cds_hooks.sandbox.')))\n"
        "from cds_hooks.web.extensions import registry_of\n"
        "registry_of(app).engine.close()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return eval(result.stdout.strip().splitlines()[-1])  # a list literal printed by the child


def test_an_app_without_the_tryit_page_never_loads_the_sandbox():
    assert _loaded_sandbox_modules(False) == []
    assert "cds_hooks.sandbox.tryit" in _loaded_sandbox_modules(True)


# Spinal anatomy: the spine extension's business only.
ANATOMY = [re.compile(p, re.IGNORECASE) for p in (r"lumbar", r"lumbosacral", r"vertebra")] + [
    re.compile(r"\bL[1-5]\b"),
    re.compile(r"\bS1\b"),
]
# Files outside spine/ that may name it anyway, with the reason.
ANATOMY_EXCEPTIONS = {
    # The EHR side builds and shows orders for the lumbar demo pack: its examples of levels as a
    # clinician types them ("L5-S1", "L4-S1") are user-facing help, not rules of the service.
    "sandbox/draft_orders.py": "help and messages show how interspaces are typed (L4-L5, L5-S1)",
    "sandbox/cli.py": "--level help shows how interspaces are typed",
    "sandbox/tryit_static/index.html": "the demo page's title names the demo pack's procedure",
}

# Generated files of third-party code, not the project's own words.
GENERATED = {
    "sandbox/tryit_static/markdown.js": "scripts/build-tryit's bundle of markdown-it and DOMPurify (npm)",
}


def test_no_module_outside_the_spine_extension_names_spinal_anatomy():
    found = []
    for path in sorted(PACKAGE.rglob("*")):
        rel = path.relative_to(PACKAGE)
        if not path.is_file() or rel.parts[0] == "spine" or path.suffix not in (".py", ".mjs", ".js", ".html", ".css"):
            continue
        if rel.as_posix() in ANATOMY_EXCEPTIONS or rel.as_posix() in GENERATED:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(p.search(line) for p in ANATOMY):
                found.append(f"cds_hooks/{rel}:{n}: {line.strip()[:120]}")
    assert not found, "spinal anatomy outside cds_hooks/spine/:\n" + "\n".join(found)


@pytest.mark.parametrize("rel", sorted(ANATOMY_EXCEPTIONS))
def test_each_anatomy_exception_is_still_needed(rel):
    text = (PACKAGE / rel).read_text(encoding="utf-8")
    assert any(p.search(text) for p in ANATOMY), f"{rel} no longer names anatomy: drop it from ANATOMY_EXCEPTIONS"
