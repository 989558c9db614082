"""PyFilesystem2 still imports pkg_resources: the setuptools<82 bound keeps it working."""

import fs


def test_fs_opens_an_osfs_and_a_mem_filesystem(tmp_path):
    with fs.open_fs(f"osfs://{tmp_path}") as disk:
        disk.writetext("hello.txt", "hi")
        assert disk.readtext("hello.txt") == "hi"
    assert (tmp_path / "hello.txt").read_text() == "hi"
    with fs.open_fs("mem://") as memory:
        memory.makedir("work")
        memory.writebytes("work/a.bin", b"\x00\x01")
        assert memory.listdir("work") == ["a.bin"]
