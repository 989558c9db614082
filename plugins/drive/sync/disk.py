"""Writing inside the local folder, and only there.

Every write the sync makes (a download put in place, a rename, a new folder, a move to
the local trash), and every read of a file it uploads, goes through
:class:`LocalFolder`, which takes paths relative to the folder and walks them one
component at a time from an open descriptor of the folder (``os.open(name,
O_NOFOLLOW | O_DIRECTORY, dir_fd=parent)``). A component that is a symbolic link,
``..``, or absolute is refused with :class:`Unsafe` instead of followed, so neither a
path from the server nor a link someone made inside the folder (``docs -> ~/.ssh``) can
make a write land outside (or an upload read from outside) — and a link swapped in
after the scan is refused as well, since nothing is resolved by path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_HAS_DIR_FD = os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd  # and replace


class Unsafe(Exception):
    """A local write refused: its path would leave the folder or pass through a
    symbolic link. Nothing was written; the message says which part and what to do."""


def components(path: str) -> list[str]:
    """The parts of a path relative to the folder; ``Unsafe`` when it could leave it."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise Unsafe(f"{path!r} is not a path inside the folder")
    if path.startswith(("/", "\\")) or os.path.isabs(path):
        raise Unsafe(f"{path!r} is an absolute path; only paths inside the folder are written")
    parts = path.split("/")
    if any(part in ("", ".", "..") or os.sep in part for part in parts):
        raise Unsafe(f"{path!r} contains '..', '.' or an empty part; it would leave the folder")
    return parts


class LocalFolder:
    """The synced folder on this disk, written through descriptors, never through links."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # ----- walking -----
    def _open_dir(self, parts: list[str], *, create: bool) -> int:
        """A descriptor of the folder ``parts`` (made when ``create``), or ``Unsafe``."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for depth, name in enumerate(parts):
                fd = self._step(fd, name, parts[: depth + 1], create)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _step(self, fd: int, name: str, so_far: list[str], create: bool) -> int:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
                os.mkdir(name, dir_fd=fd)
            child = self._step_existing(fd, name, so_far)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise
            raise self._refusal(fd, name, so_far) from None
        os.close(fd)
        return child

    def _step_existing(self, fd: int, name: str, so_far: list[str]) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise
            raise self._refusal(fd, name, so_far) from None

    @staticmethod
    def _refusal(fd: int, name: str, so_far: list[str]) -> Unsafe:
        where = "/".join(so_far)
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return Unsafe(
                f"{where} is a symbolic link here, and the sync never writes through one; "
                "replace the link with a real folder (or remove it) to sync this path"
            )
        return Unsafe(f"{where} is a file here, not a folder; rename it to sync this path")

    def _parent(self, path: str, *, create: bool) -> tuple[int, str]:
        parts = components(path)
        if not _HAS_DIR_FD:  # pragma: no cover - platforms without dir_fd (Windows)
            raise Unsafe("this platform cannot write without following links (no dir_fd)")
        return self._open_dir(parts[:-1], create=create), parts[-1]

    # ----- what the sync does -----
    def lstat(self, path: str) -> os.stat_result | None:
        """The item at ``path`` itself (a link is not followed); None when absent,
        ``Unsafe`` when a folder on the way is a link."""
        try:
            fd, name = self._parent(path, create=False)
        except FileNotFoundError:
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    def open_read(self, path: str) -> BinaryIO:
        """The regular file at ``path``, open for reading (a link or a device is refused)."""
        fd, name = self._parent(path, create=False)
        try:
            handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EMLINK):
                raise
            raise Unsafe(f"{path} is a symbolic link here; links are not synced") from None
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            os.close(handle)
            raise Unsafe(f"{path} is not a regular file here; only files are synced")
        os.set_blocking(handle, True)
        return os.fdopen(handle, "rb")

    def create(self, path: str) -> BinaryIO:
        """A new file at ``path`` (its folders made), open for writing."""
        fd, name = self._parent(path, create=True)
        try:
            handle = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd
            )
        finally:
            os.close(fd)
        return os.fdopen(handle, "wb")

    def unlink(self, path: str) -> None:
        try:
            fd, name = self._parent(path, create=False)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)

    def move(self, source: str, dest: str) -> None:
        """Rename ``source`` to ``dest`` (its folders made); a link at ``dest`` is refused,
        not replaced, and a folder there is left alone."""
        src_fd, src_name = self._parent(source, create=False)
        try:
            dst_fd, dst_name = self._parent(dest, create=True)
            try:
                try:
                    there = os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
                except FileNotFoundError:
                    there = None
                if there is not None and stat.S_ISLNK(there.st_mode):
                    raise Unsafe(
                        f"{dest} is a symbolic link here, and the sync never replaces one; "
                        "remove the link to sync this path"
                    )
                if there is not None and stat.S_ISDIR(there.st_mode):
                    raise Unsafe(f"{dest} is a folder here; rename it to sync this path")
                os.replace(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    def mkdir(self, path: str) -> None:
        """The folder ``path`` and its parents (existing real folders are fine)."""
        os.close(self._open_dir(components(path), create=True))

    def is_empty_dir(self, path: str) -> bool:
        try:
            fd = self._open_dir(components(path), create=False)
        except (FileNotFoundError, Unsafe):
            return False
        try:
            return not os.listdir(fd)
        finally:
            os.close(fd)

    def rmdir(self, path: str) -> None:
        fd, name = self._parent(path, create=False)
        try:
            os.rmdir(name, dir_fd=fd)
        finally:
            os.close(fd)
