"""Data flows one way: no module imports a layer above its own (docs/architecture.md, "Layers").

Every ``.py`` under the installed folders is parsed, and every import in it counts: at the
top, inside a function, under ``if TYPE_CHECKING``. The layers, bottom to top:

0. **shared**: the contracts and utilities in ``iotpipe/`` (wire, topics, settings, …);
1. **parts**: ``iotpipe.broker``, ``iotpipe.bridge``, ``iotpipe.dashboard``,
   ``iotpipe.board``; a part imports only itself and the shared layer, except that the
   board side may use the broker's (a Wi-Fi board's login is a broker login);
2. **commands**: ``iotpipe.commands.*`` (one module per sub-command, and what composes
   parts for one), the CLI and the entry points; they may import anything.

Inside the dashboard, a blueprint module does not import another one: what two of them
share lives in a module below both, and ``create_app`` alone puts them together.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from iotpipe.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("broker", "bridge", "dashboard", "board")
# The one sibling import allowed: (importer's part, imported part).
SIBLINGS = {("board", "broker")}
# The entry points beside the CLI's commands, and why each is up there.
ENTRY_POINTS = {
    "iotpipe.cli": "the CLI itself",
    "iotpipe.__main__": "`python -m iotpipe`",
    "iotpipe.ready": "the iotpipe-ready console script: reads the CLI's parser",
    "iotpipe.healthcheck": "the container's HEALTHCHECK: reads the CLI's parser",
}


def modules() -> dict[str, Path]:
    """Every host module's dotted name -> its file (the firmware runs on the board and is
    no host module: it stays out of iotpipe/)."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "iotpipe").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@dataclass(frozen=True)
class Layer:
    rank: int
    part: str | None = None

    def __str__(self) -> str:
        return {0: "shared", 2: "commands"}.get(self.rank, f"part {self.part}")


def layer_of(module: str) -> Layer:
    if module in ENTRY_POINTS or module.startswith("iotpipe.commands"):
        return Layer(2)
    for part in PARTS:
        if module == f"iotpipe.{part}" or module.startswith(f"iotpipe.{part}."):
            return Layer(1, part)
    return Layer(0)


def allowed(source: Layer, target: Layer) -> bool:
    if target.rank != source.rank:
        return target.rank < source.rank
    return source.rank != 1 or source.part == target.part or (source.part, target.part) in SIBLINGS


def imports(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) for every import of an iotpipe module in the file, wherever it is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # `from iotpipe.dashboard import api` imports the module api, not a name.
                child = f"{base}.{alias.name}"
                found.append((node.lineno, child if child in known else base))
    # One entry per imported module and line: `from m import a, b` is one import of m.
    ours = {
        (line, name) for line, name in found if name == "iotpipe" or name.startswith("iotpipe.")
    }
    return sorted(ours)


def defines_blueprint(path: Path) -> bool:
    for node in ast.parse(path.read_text()).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Blueprint":
            return True
    return False


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_every_import_points_down_or_stays_in_its_part() -> None:
    found = modules()
    wrong = []
    for module, path in found.items():
        source = layer_of(module)
        for line, target in imports(path, module, set(found)):
            if not allowed(source, layer_of(target)):
                wrong.append(
                    f"{where(path, line)}: {module} ({source}) "
                    f"imports {target} ({layer_of(target)})"
                )
    assert not wrong, "imports against the layers (docs/architecture.md):\n" + "\n".join(wrong)


def test_dashboard_blueprints_do_not_import_each_other() -> None:
    found = modules()
    blueprints = {
        m for m, p in found.items() if m.startswith("iotpipe.dashboard.") and defines_blueprint(p)
    }
    assert {"iotpipe.dashboard.api", "iotpipe.dashboard.stream"} <= blueprints  # the rule bites
    wrong = [
        f"{where(found[module], line)}: blueprint {module} imports blueprint {target}"
        for module in sorted(blueprints)
        for line, target in imports(found[module], module, set(found))
        if target in blueprints and target != module
    ]
    assert not wrong, "blueprints share through a module below them:\n" + "\n".join(wrong)


def test_every_command_lives_in_the_commands_package() -> None:
    """A sub-command's module is found where the commands are, and exists (a renamed one
    must not fall out of the table unnoticed); so are the entry points."""
    found = set(modules())
    elsewhere = [m for _w, m, _h in COMMANDS if not m.startswith("iotpipe.commands.")]
    assert not elsewhere, f"commands outside iotpipe/commands/: {elsewhere}"
    assert not ({m for _w, m, _h in COMMANDS} | set(ENTRY_POINTS)) - found


def test_architecture_doc_names_every_command_and_shared_module() -> None:
    """docs/architecture.md's layer table says where each module is; it cannot fall behind."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Layers") :].split("\n## ", 1)[0]
    unnamed = [
        f"{module} ({layer_of(module)})"
        for module in sorted(modules())
        if module != "iotpipe" and layer_of(module).rank != 1 and f"`{module}`" not in section
    ]
    assert not unnamed, "not in docs/architecture.md, section Layers: " + ", ".join(unnamed)
