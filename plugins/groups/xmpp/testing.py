"""A real Prosody for tests and benchmarks: its own config in a folder, loopback only,
in the foreground, with the bridge's component and accounts for XMPP test clients.

Needs the Debian package ``prosody`` (``apt-get install prosody``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from anywhere.bridge.testing.synapse import free_port

INSTALL_HINT = "Prosody is not installed: run `apt-get install prosody` (Debian/Ubuntu)"

CONFIG = """\
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
daemonize = false
run_as_root = true
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ {component_port} }}
component_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
http_host = "127.0.0.1"
http_external_url = "http://127.0.0.1:{http_port}/"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"; "vcard" }}
modules_disabled = {{ "s2s"; "tls" }}
authentication = "internal_plain"
allow_registration = false
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
storage = "internal"
log = {{ {level} = "{dir}/prosody.log" }}
certificates = "certs"
limits = {{ c2s = {{ rate = "100mb/s" }}; component = {{ rate = "100mb/s" }} }}

VirtualHost "{domain}"

Component "{muc}" "muc"
    modules_enabled = {{ "muc_mam" }}

Component "{upload}" "http_file_share"
    http_file_share_size_limit = 20971520
    http_file_share_expires_after = 86400

Component "{component}"
    component_secret = "{secret}"
"""


class Prosody:
    def __init__(
        self,
        workdir: Path,
        *,
        domain: str = "localhost",
        secret: str = "component-secret",
        level: str = "info",
    ) -> None:
        self.binary = shutil.which("prosody")
        if self.binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.workdir = workdir
        self.domain = domain
        self.muc = f"conference.{domain}"
        self.upload = f"upload.{domain}"
        self.component = f"matrix.{domain}"
        self.secret = secret
        self.c2s_port, self.component_port, self.http_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        (workdir / "certs").mkdir(exist_ok=True)
        self.config_path = workdir / "prosody.cfg.lua"
        self.config_path.write_text(
            CONFIG.format(
                dir=workdir,
                c2s_port=self.c2s_port,
                component_port=self.component_port,
                http_port=self.http_port,
                domain=domain,
                muc=self.muc,
                upload=self.upload,
                component=self.component,
                secret=secret,
                level=level,
            ),
            "utf-8",
        )

    @property
    def log_path(self) -> Path:
        return self.workdir / "prosody.log"

    def add_user(self, name: str, password: str) -> str:
        """Create an account by writing Prosody's own account file (internal_plain)."""
        host_dir = self.workdir / "data" / self.domain.replace(".", "%2e") / "accounts"
        host_dir.mkdir(parents=True, exist_ok=True)
        quoted = password.replace("\\", "\\\\").replace('"', '\\"')
        (host_dir / f"{name}.dat").write_text(f'return {{ ["password"] = "{quoted}"; }};\n')
        return f"{name}@{self.domain}"

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.workdir / "prosody.out", "ab")  # noqa: SIM115 - the child's stdout
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.config_path), "-F"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Prosody exited with {self.proc.returncode}:\n{self.tail()}")
            if all(self._listening(p) for p in (self.c2s_port, self.component_port)):
                return
            time.sleep(0.1)
        raise RuntimeError(f"Prosody did not listen within {timeout} s:\n{self.tail()}")

    def _listening(self, port: int) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 40) -> str:
        text = ""
        for name in ("prosody.out", "prosody.log"):
            path = self.workdir / name
            if path.exists():
                text += "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:]) + "\n"
        return text


class XmppPerson:
    """A person in an XMPP client (slixmpp), remembering every message they receive."""

    def __init__(self, jid: str, password: str, port: int) -> None:
        from slixmpp import ClientXMPP
        from slixmpp.xmlstream.handler import Callback

        from .stanzas import BodylessMessages

        self.jid = jid
        self.port = port
        self.client = ClientXMPP(jid, password)
        self.client.enable_starttls = False
        self.client.enable_direct_tls = False
        self.client.enable_plaintext = True
        self.client.plugin["feature_mechanisms"].unencrypted_plain = True
        self.client.register_plugin("xep_0030")
        self.messages: list = []
        self.presences: list = []
        self._ready = None
        self.client.add_event_handler("message", self.messages.append)
        self.client.register_handler(  # reactions and other messages without a body
            Callback("Bodyless", BodylessMessages(self.client.default_ns), self.messages.append)
        )
        self.client.add_event_handler("presence", self.presences.append)

    async def connect(self, timeout: float = 15.0) -> None:
        import asyncio

        ready = asyncio.get_running_loop().create_future()

        def started(_event) -> None:
            self.client.send_presence()
            if not ready.done():
                ready.set_result(True)

        def failed(event) -> None:
            if not ready.done():
                ready.set_exception(RuntimeError(f"{self.jid} could not log in: {event}"))

        self.client.add_event_handler("session_start", started)
        self.client.add_event_handler("failed_all_auth", failed)
        self.client.connect("127.0.0.1", self.port)
        await asyncio.wait_for(ready, timeout)

    async def join(self, room: str, nick: str, timeout: float = 15.0) -> None:
        """Join a multi-user chat (created if needed, and configured as an instant room)."""
        import asyncio
        import xml.etree.ElementTree as ET

        mark = len(self.presences)
        presence = self.client.make_presence(pto=f"{room}/{nick}")
        presence.append(ET.Element("{http://jabber.org/protocol/muc}x"))
        presence.send()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.presences[mark:]:
                if item["from"].full == f"{room}/{nick}" and item["type"] != "error":
                    if 'code="201"' in str(item):
                        iq = self.client.make_iq_set(ito=room)
                        query = ET.Element("{http://jabber.org/protocol/muc#owner}query")
                        query.append(ET.Element("{jabber:x:data}x", {"type": "submit"}))
                        iq.append(query)
                        await iq.send()
                    return
                if item["from"].bare == room and item["type"] == "error":
                    raise RuntimeError(f"{self.jid} could not join {room}: {item}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.jid} could not join {room} within {timeout} s")

    def send(self, to: str, body: str, mtype: str = "chat", msg_id: str | None = None, extra=()):
        msg = self.client.make_message(mto=to, mbody=body, mtype=mtype)
        if msg_id:
            msg["id"] = msg_id
        for element in extra:
            msg.append(element)
        msg.send()
        return msg["id"]

    async def wait_for(self, predicate, timeout: float = 30.0, start: int = 0):
        import asyncio

        deadline = time.monotonic() + timeout
        while True:
            for msg in self.messages[start:]:
                if predicate(msg):
                    return msg
            if time.monotonic() > deadline:
                seen = [(str(m["from"]), m["body"]) for m in self.messages[-10:]]
                raise TimeoutError(f"{self.jid} got nothing matching in {timeout} s: {seen}")
            await asyncio.sleep(0.05)

    def mark(self) -> int:
        return len(self.messages)

    async def close(self) -> None:
        import asyncio

        self.client.disconnect()
        await asyncio.sleep(0.1)
