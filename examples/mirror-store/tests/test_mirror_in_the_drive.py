"""The mirror store under the drive, in-process with the plugin kit: the drive (an
installed entry point) opens its storage_url through this package's hook."""

from anywhere_mirror import MirrorPlugin


async def test_the_drive_starts_on_the_mirror_and_answers(plugin_kit, tmp_path):
    copies = [f"osfs://{tmp_path / 'disk1'}", f"osfs://{tmp_path / 'disk2'}"]
    settings = {"drive": {"storage_url": "mirror://"}, "mirror_store": {"copies": copies}}
    kit = await plugin_kit({"mirror_store": MirrorPlugin()}, enabled=["drive"], settings=settings)
    dm = await kit.direct_chat()
    await dm.send("drive quota")
    assert (await dm.next_reply()).startswith("You use 0 B of ")
    assert (tmp_path / "disk1").is_dir() and (tmp_path / "disk2").is_dir()
