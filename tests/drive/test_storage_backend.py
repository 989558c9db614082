"""A storage backend from a plugin package (examples/mirror-store, docs/drive.md): the
drive keeps its content wherever ``anywhere_blob_stores`` says, held to the same contract
as the built-in store."""

from __future__ import annotations

import hashlib
import os

import pytest
from anywhere_mirror import MirrorPlugin, open_mirror

from anywhere.bridge import hookimpl
from anywhere.bridge.errors import ConfigError, PluginLoadError
from anywhere.bridge.pluginmanager import PluginManager
from anywhere.bridge.services import Extensions
from anywhere.bridge.testing.blobstore import check_blob_store
from anywhere.bridge.testing.stack import Stack
from anywhere.plugins.drive import DrivePlugin, collect_blob_openers
from anywhere.storage.blobs import BlobError
from anywhere.storage.blobs_fs import blob_path
from anywhere.storage.stores import open_blob_store

from .people import Api, DrivePerson


@pytest.mark.asyncio(loop_scope="function")
async def test_the_example_backend_keeps_the_blob_store_contract(tmp_path):
    await check_blob_store(open_mirror("mirror://", ["mem://", f"osfs://{tmp_path / 'b'}"]))


def test_the_example_backend_says_what_is_wrong_with_its_settings():
    validate = MirrorPlugin().anywhere_config_section().validate
    with pytest.raises(ConfigError, match="copies: expected two or more filesystem URLs"):
        validate({"copies": ["osfs:///srv/one"]}, "plugins.settings.mirror_store")
    with pytest.raises(ConfigError, match="filesystem URLs such as"):
        validate({"copies": ["osfs:///a", "mirror://"]}, "plugins.settings.mirror_store")
    with pytest.raises(BlobError, match=r"write the storage URL as just mirror://"):
        open_mirror("mirror://somewhere", ["mem://", "mem://"])


class Bridge:
    """The bits of the bridge that collecting blob stores reads."""

    def __init__(self, plugins):
        self.extensions = Extensions(plugins.collect)

    def settings(self, name):
        return {"copies": ["mem://", "mem://"]}


class SameScheme:
    @hookimpl
    def anywhere_blob_stores(self, bridge):
        return {"MIRROR": lambda url: None}


class BadScheme:
    @hookimpl
    def anywhere_blob_stores(self, bridge):
        return {"no spaces://": lambda url: None}


def with_drive() -> PluginManager:
    """A plugin manager with the drive, which declares ``anywhere_drive_blob_stores``."""
    plugins = PluginManager()
    plugins.register(DrivePlugin(), "drive")
    return plugins


class OldStyle:
    @hookimpl
    def anywhere_blob_stores(self, bridge):
        return {"old": lambda url: open_blob_store("mem://")}


def test_the_deprecated_hook_name_still_works_with_a_warning_naming_the_new_one():
    plugins = with_drive()
    with pytest.warns(DeprecationWarning, match=r"implement anywhere_drive_blob_stores\(bridge\)"):
        plugins.register(OldStyle(), "old_style")
    plugins.register(MirrorPlugin(), "mirror_store")
    plugins.check_hooks()
    assert set(collect_blob_openers(Bridge(plugins))) == {"old", "mirror"}


def test_a_store_plugin_may_load_before_the_drive_but_not_without_it():
    plugins = PluginManager()
    plugins.register(MirrorPlugin(), "mirror_store")  # before the hook is declared
    plugins.register(DrivePlugin(), "drive")
    plugins.check_hooks()
    assert set(collect_blob_openers(Bridge(plugins))) == {"mirror"}
    alone = PluginManager()
    alone.register(MirrorPlugin(), "mirror_store")
    with pytest.raises(PluginLoadError, match="'mirror_store' implements a hook nobody declares"):
        alone.check_hooks()


def test_a_scheme_two_plugins_give_stops_start_up_naming_both():
    plugins = with_drive()
    plugins.register(MirrorPlugin(), "mirror_store")
    plugins.register(SameScheme(), "copycat")
    with pytest.raises(PluginLoadError, match="blob store for the URL scheme 'mirror'") as caught:
        collect_blob_openers(Bridge(plugins))
    assert "'copycat'" in str(caught.value) and "'mirror_store'" in str(caught.value)
    plugins = with_drive()
    plugins.register(BadScheme(), "odd")
    with pytest.raises(PluginLoadError, match="plugin 'odd': anywhere_blob_stores must map"):
        collect_blob_openers(Bridge(plugins))


@pytest.mark.asyncio(loop_scope="function")
async def test_the_opener_gets_the_url_and_pyfilesystem2_keeps_the_rest():
    plugins = with_drive()
    plugins.register(MirrorPlugin(), "mirror_store")
    openers = collect_blob_openers(Bridge(plugins))
    assert set(openers) == {"mirror"}
    mirror = open_blob_store("mirror://", openers)
    assert [type(copy).__name__ for copy in mirror.copies] == ["FSBlobStore", "FSBlobStore"]
    await mirror.close()
    plain = open_blob_store("mem://", openers)
    assert type(plain).__name__ == "FSBlobStore"
    await plain.close()


@pytest.fixture(scope="module")
def mirror_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mirror")
    copies = [workdir / "disk1", workdir / "disk2"]
    stack = Stack(
        workdir,
        ["basics", "drive", "mirror_store"],
        settings={
            "drive": {"storage_url": "mirror://"},
            "mirror_store": {"copies": [f"osfs://{path}" for path in copies]},
        },
    )
    stack.copies = copies
    with stack:
        yield stack


@pytest.mark.e2e
async def test_uploads_land_on_every_copy_and_are_served_while_one_lacks_them(mirror_stack):
    person = DrivePerson(await mirror_stack.user(), mirror_stack)
    try:
        api = Api(mirror_stack, person)
        folder = await api.folder("Contracts")
        data = os.urandom(1_500_000)
        digest = hashlib.sha256(data).hexdigest()
        status, _, _ = await api.call("PUT", f"/folders/{folder}/files/deal.pdf", data=data)
        assert status == 201
        stored = [copy / blob_path(digest) for copy in mirror_stack.copies]
        assert [path.read_bytes() == data for path in stored] == [True, True]

        stored[0].unlink()  # the first disk lost it: the second one serves it
        status, _, body = await api.call("GET", f"/folders/{folder}/files/deal.pdf")
        assert (status, body) == (200, data)
        status, _, body = await api.call(
            "GET", f"/folders/{folder}/files/deal.pdf", headers={"Range": "bytes=100-199"}
        )
        assert (status, body) == (206, data[100:200])
    finally:
        await person.close()
