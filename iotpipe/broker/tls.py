"""A private CA and a server certificate for the broker's mqtts:// listener on a LAN.

Made once with the `openssl` command, in DATA/tls: ``ca.crt`` is what clients trust
(`--mqtt-ca`), ``ca.key`` and ``server.key`` stay private (mode 0600). The server
certificate names localhost, 127.0.0.1, this host's name and every ``--tls-name``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from iotpipe.errors import UserError

DAYS = 825  # the longest validity that Apple and browsers accept for a server certificate


def tls_dir(data: Path) -> Path:
    return data / "tls"


def _alt_names(names: list[str]) -> str:
    wanted = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *names]
    seen: list[str] = []
    for name in wanted:
        if name and name not in seen:
            seen.append(name)
    return ",".join(
        (f"IP:{n}" if n.replace(".", "").isdigit() or ":" in n else f"DNS:{n}") for n in seen
    )


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise UserError("openssl is not installed — `sudo apt-get install openssl`")
    result = subprocess.run([binary, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"openssl {args[0]} failed: {result.stderr.strip()[-300:]}")


def ensure(data: Path, names: list[str]) -> Path:
    """The TLS directory, with a CA and a server certificate made on first use."""
    folder = tls_dir(data)
    if (folder / "server.crt").exists() and (folder / "ca.crt").exists():
        return folder
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "server.ext"
    _openssl("genrsa", "-out", str(ca_key), "2048")
    _openssl("req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", str(DAYS),
             "-subj", f"/CN=iotpipe CA {socket.gethostname()}", "-out", str(ca_crt))  # fmt: skip
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", "/CN=iotpipe broker", "-out", str(csr))
    ext.write_text(
        f"subjectAltName={_alt_names(names)}\nextendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", str(DAYS), "-sha256", "-extfile", str(ext),
             "-out", str(crt))  # fmt: skip
    for private in (ca_key, key):
        os.chmod(private, 0o600)
    csr.unlink()
    ext.unlink()
    return folder


def listener(port: int, bind: str, folder: Path) -> str:
    folder = folder.resolve()
    return (
        f"listener {port} {bind}\n"
        f"cafile {folder}/ca.crt\n"
        f"certfile {folder}/server.crt\n"
        f"keyfile {folder}/server.key\n"
        "tls_version tlsv1.2\n"
    )
