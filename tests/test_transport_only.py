"""One MQTT transport (issue 13): only ``iotpipe/transport/`` makes a paho client or drives
its network (docs/architecture.md, "One MQTT transport").

Every module under ``iotpipe/`` is parsed. Outside the transport it must not call
``paho.mqtt.client.Client`` (however it was imported) nor any of paho's connect and loop
methods, whatever object they are called on — a name like ``connect`` on a database
module (``sqlite3.connect``) is the one exception, told apart by what the module imported.
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT

TRANSPORT = ROOT / "iotpipe" / "transport"
NETWORK_CALLS = {
    "connect", "connect_async", "connect_srv", "reconnect", "reconnect_delay_set",
    "loop", "loop_start", "loop_stop", "loop_forever", "loop_read", "loop_write", "loop_misc",
}  # fmt: skip


def _imports(tree: ast.Module) -> tuple[set[str], set[str], set[str]]:
    """Names bound to paho's client module, names bound to its ``Client`` class, and
    names bound to any other imported module."""
    paho_modules, client_names, other_modules = set(), {"paho.mqtt.client.Client"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if alias.name == "paho.mqtt.client":
                    paho_modules.add(alias.asname or alias.name)
                elif not alias.name.startswith("paho"):
                    other_modules.add(bound)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for alias in node.names:
                bound = alias.asname or alias.name
                if node.module == "paho.mqtt.client" and alias.name == "Client":
                    client_names.add(bound)
                elif node.module == "paho.mqtt" and alias.name == "client":
                    paho_modules.add(bound)
    return paho_modules, client_names, other_modules


def violations(source: str, where: str) -> list[str]:
    tree = ast.parse(source)
    paho_modules, client_names, other_modules = _imports(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        text = ast.unparse(func)
        makes_client = text in client_names or (
            isinstance(func, ast.Attribute)
            and func.attr == "Client"
            and ast.unparse(func.value) in paho_modules
        )
        if makes_client:
            found.append(f"{where}:{node.lineno}: {text}(…) makes a paho client")
        elif isinstance(func, ast.Attribute) and func.attr in NETWORK_CALLS:
            receiver = ast.unparse(func.value)
            if receiver in other_modules:
                continue
            found.append(f"{where}:{node.lineno}: {text}(…) drives an MQTT connection")
    return found


def test_only_the_transport_makes_paho_clients_or_drives_their_network() -> None:
    found = []
    for path in sorted((ROOT / "iotpipe").rglob("*.py")):
        if path.is_relative_to(TRANSPORT):
            continue
        where = path.relative_to(ROOT).as_posix()
        found += violations(path.read_text(), where)
    assert found == [], "use iotpipe.transport instead:\n" + "\n".join(found)


def test_the_transport_itself_does_what_the_others_may_not() -> None:
    """The scan sees the real thing: run over the transport, it finds its client and loops."""
    found = []
    for path in sorted(TRANSPORT.rglob("*.py")):
        found += violations(path.read_text(), path.name)
    text = "\n".join(found)
    for expected in ("mqtt.Client(…)", "loop_read(…)", "loop_start(…)", "reconnect(…)"):
        assert expected in text, f"{expected} not found by the scan in iotpipe/transport"


def test_the_check_finds_every_way_of_making_or_driving_a_client() -> None:
    source = """
import sqlite3
import paho.mqtt.client as mqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt import client as pc

a = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
b = PahoClient()
c = pc.Client()
a.connect("127.0.0.1", 1883)
b.loop_start()
self.client.loop_forever()
sqlite3.connect(":memory:")
self.connect("device")
"""
    found = violations(source, "iotpipe/somewhere.py")
    assert [line.split(": ", 1)[1] for line in found] == [
        "mqtt.Client(…) makes a paho client",
        "PahoClient(…) makes a paho client",
        "pc.Client(…) makes a paho client",
        "a.connect(…) drives an MQTT connection",
        "b.loop_start(…) drives an MQTT connection",
        "self.client.loop_forever(…) drives an MQTT connection",
        "self.connect(…) drives an MQTT connection",
    ]
