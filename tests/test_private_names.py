"""No library's private names are overridden or patched, anywhere in the host code (issue 13).

ruff's SLF rules catch ``obj._name`` read or written on anything but ``self``; two things
they cannot see are checked here: a class of ours that subclasses a library's class and
defines (or assigns on ``self``) a single-underscore name the library's class also has —
overriding its private method or state — and a private name set through ``setattr`` or
``delattr`` with a string. Names are read from the source (what we wrote), the library's
from its class and its source (what its methods assign on ``self``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

# Folder → the package it is installed as (pyproject.toml's package-dir).
PACKAGES = {"iotpipe": "iotpipe", "bridge": "iotpipe.bridge", "dashboard": "iotpipe.dashboard"}
PACKAGES["broker"] = "iotpipe.broker"
SELF_NAMES = {"self", "cls"}


def _private(name: str) -> bool:
    """A single leading underscore; not a dunder, a mangled ``__name`` or an Enum ``_sunder_``
    hook (those are public API)."""
    return (
        name.startswith("_")
        and not name.startswith("__")
        and not (name.endswith("_") and len(name) > 2)
    )


def _sources() -> Iterator[tuple[str, Path]]:
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


def _self_assigned(tree: ast.AST) -> set[str]:
    """Names a class's methods assign (or annotate, or delete) on ``self``."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store | ast.Del)
            and isinstance(node.value, ast.Name)
            and node.value.id in SELF_NAMES
        ):
            found.add(node.attr)
    return found


def _class_body_names(node: ast.ClassDef) -> set[str]:
    found = _self_assigned(node)
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(item.name)
        elif isinstance(item, ast.Assign):
            found.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            found.add(item.target.id)
    return found


def _library_names(base: type) -> set[str]:
    names = set(vars(base))
    try:
        source = textwrap.dedent(inspect.getsource(base))
    except (OSError, TypeError):  # a class written in C: what it has is in vars()
        return names
    return names | _self_assigned(ast.parse(source))


def _ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "iotpipe"


def overrides(module: ModuleType, tree: ast.Module) -> list[str]:
    """'Ours._name overrides lib.Base._name' for each such clash in the module's classes."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(module, node.name, None)  # classes inside functions cannot be reached
        if not isinstance(cls, type) or cls.__module__ != module.__name__:
            continue
        ours = {n for n in _class_body_names(node) if _private(n)}
        for base in cls.__mro__[1:]:
            if base is object or _ours(base):
                continue
            for name in sorted(ours & _library_names(base)):
                found.append(
                    f"{module.__name__}.{node.name}.{name} overrides "
                    f"{base.__module__}.{base.__qualname__}.{name}"
                )
    return found


def patches(tree: ast.Module, where: str) -> list[str]:
    """Each private name written on an object other than self: ``obj._x = …``, ``del obj._x``,
    ``setattr(obj, "_x", …)``, ``delattr(obj, "_x")``."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store | ast.Del)
            and _private(node.attr)
            and not (isinstance(node.value, ast.Name) and node.value.id in SELF_NAMES)
        ):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)} written")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and not (isinstance(node.args[0], ast.Name) and node.args[0].id in SELF_NAMES)
        ):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and inspect look a class's module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "path"), list(_sources()), ids=lambda v: str(v))
def test_no_class_overrides_and_no_code_patches_a_private_name_of_a_library(
    name: str, path: Path
) -> None:
    tree = ast.parse(path.read_text(), str(path))
    found = patches(tree, str(path.relative_to(ROOT)))
    if not name.endswith("__main__"):  # importing it would run the CLI
        found += overrides(importlib.import_module(name), tree)
    assert not found, "\n".join(found)


# --- the checks themselves find what they are for ----------------------------------------

OLD_OPEN_PORT = """
import serial

def open_port(url: str, baud: int) -> serial.SerialBase:
    port = serial.serial_for_url(url, baudrate=baud, do_not_open=True)
    if hasattr(port, "_reset_input_buffer"):
        port._reset_input_buffer = lambda: None
        try:
            port.open()
        finally:
            del port._reset_input_buffer
    return port
"""


def test_the_check_finds_a_private_method_hidden_on_a_library_object() -> None:
    """How iotpipe/bridge/lines.py kept pyserial from emptying the port's buffer, until issue 13."""
    found = patches(ast.parse(OLD_OPEN_PORT), "lines.py")
    assert found == [
        "lines.py:7: port._reset_input_buffer written",
        "lines.py:11: port._reset_input_buffer written",
    ]
    assert patches(ast.parse('setattr(client, "_sock", None)'), "x.py") == [
        "x.py:1: setattr(client, '_sock', None)"
    ]


SUBCLASSES = """
import threading

import paho.mqtt.client as mqtt


class Worker(threading.Thread):
    def run(self) -> None:  # public: allowed
        self._mine = 1  # a name the library does not have: allowed

    def _bootstrap(self) -> None:
        pass


class Quick(mqtt.Client):
    def _sock_send(self, buf: bytes) -> int:
        return 0

    def reset(self) -> None:
        self._out_packet = None
"""


def test_the_check_finds_a_subclass_overriding_a_library_private_name(tmp_path: Path) -> None:
    path = tmp_path / "subclasses.py"
    path.write_text(SUBCLASSES)
    module = _load("test_private_names_subclasses", path)
    found = overrides(module, ast.parse(SUBCLASSES))
    assert found == [
        "test_private_names_subclasses.Worker._bootstrap overrides threading.Thread._bootstrap",
        "test_private_names_subclasses.Quick._out_packet overrides paho.mqtt.client.Client."
        "_out_packet",
        "test_private_names_subclasses.Quick._sock_send overrides paho.mqtt.client.Client."
        "_sock_send",
    ]
