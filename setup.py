"""Packaging beyond pyproject.toml: the installed layout (issue 15).

The repository keeps its folders ``bridge/ plugins/ policy/ storage/`` at the top; the
distribution installs them as ``anywhere.bridge``, ``anywhere.plugins``, ... under one
top-level package, ``anywhere``, whose own files live in ``bridge/_anywhere/``. Nothing
else goes to the top of site-packages except ``anywhere_legacy_names.pth``, which keeps
the old names working for one release (see ``bridge/_anywhere/_legacy_names.py``).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

FOLDERS = ("bridge", "plugins", "policy", "storage")
OWN = "bridge/_anywhere"
PTH = "anywhere_legacy_names.pth"


def packages() -> tuple[list[str], dict[str, str]]:
    names = ["anywhere"]
    package_dir = {"anywhere": OWN}
    for folder in FOLDERS:
        package_dir[f"anywhere.{folder}"] = folder
        names.append(f"anywhere.{folder}")
        for sub in find_packages(folder, exclude=["_anywhere", "_anywhere.*"]):
            names.append(f"anywhere.{folder}.{sub}")
    return names, package_dir


class BuildPy(build_py):
    """Also puts the .pth file at the top of the build, so wheels install it."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(Path(OWN) / PTH), str(Path(self.build_lib) / PTH))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]


class EditableWheel(editable_wheel):
    """An editable install (``pip install -e .``) gets the .pth file too, so that a checkout
    answers the old names as an installed wheel does instead of loading its folders a
    second time (``python -m bridge`` from the checkout's folder)."""

    def _select_strategy(self, name: str, tag: str, build_lib: str) -> object:
        return _WithPth(super()._select_strategy(name, tag, build_lib))


class _WithPth:
    """Wraps setuptools' editable strategy: writes the .pth beside what it writes."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __enter__(self) -> _WithPth:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> object:
        return self.inner.__exit__(*exc)

    def __call__(self, wheel: object, files: list[str], mapping: dict[str, str]) -> None:
        self.inner(wheel, files, mapping)
        wheel.writestr(PTH, (Path(OWN) / PTH).read_text("utf-8"))


COMMANDS: dict[str, type] = {"build_py": BuildPy}
if hasattr(editable_wheel, "_select_strategy"):  # setuptools' own hook, not a public API
    COMMANDS["editable_wheel"] = EditableWheel

NAMES, PACKAGE_DIR = packages()

setup(
    packages=NAMES,
    package_dir=PACKAGE_DIR,
    package_data={
        "anywhere": [PTH],  # so that an sdist carries it too
        "anywhere.bridge": ["config.example.yaml"],
        "anywhere.policy": ["examples/*.yaml"],
    },
    cmdclass=COMMANDS,
)
