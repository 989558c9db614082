"""One namespace when installed (issue 15): the wheel puts only ``anywhere`` at the top of
site-packages, next to another distribution's top-level ``storage`` both work, the old
names (``policy.synapse_module.AnywherePolicyModule``, ``python -m bridge``, ``bridge.*``)
still work for one release with a warning that names the new one, and the tests see one
copy of every module."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import anywhere

ROOT = Path(__file__).resolve().parent.parent
OLD = ("bridge", "plugins", "policy", "storage")


def duplicate_modules(modules: dict[str, ModuleType | None]) -> list[str]:
    """Names under which a second copy of one of Anywhere's files was loaded."""
    by_file: dict[str, ModuleType] = {}
    twice = []
    for name, module in sorted(modules.items()):
        path = getattr(module, "__file__", None)
        if not path or not os.path.realpath(path).startswith(str(ROOT) + os.sep):
            continue
        first = by_file.setdefault(os.path.realpath(path), module)
        if first is not module:
            twice.append(f"{name} (already loaded as {first.__name__})")
    return twice


def test_the_tests_see_one_copy_of_each_module() -> None:
    """Everything of anywhere imported (as the test session already has much of it): no
    file is loaded under a second name, and nothing was imported by an old name (that would
    give the same module with a warning, as importing anywhere installs the legacy-names
    finder, but the project itself uses the new names only)."""
    todo = ["anywhere.bridge", "anywhere.plugins", "anywhere.policy", "anywhere.storage"]
    while todo:
        package = importlib.import_module(todo.pop())
        for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
            # __main__ runs the CLI; bridge/_anywhere/ is the `anywhere` package itself
            # (left out of the wheel's anywhere.bridge, importable only from a checkout).
            if info.name.endswith(("__main__", "._anywhere")):
                continue
            if info.ispkg:
                todo.append(info.name)
            else:
                importlib.import_module(info.name)
    assert duplicate_modules(dict(sys.modules)) == []
    old_names = [name for name in sys.modules if name.split(".")[0] in OLD]
    assert old_names == [], "the code and the tests use the new names only"


def run_python(
    code: str, *, cwd: Path, python: str = sys.executable
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_source_checkout_on_sys_path_gives_no_second_copy(tmp_path: Path) -> None:
    """From the repository folder, ``import bridge.errors`` finds the folder itself: without
    the legacy-names finder that is a second copy, which the check above sees; with it (put
    in place by the .pth file of wheel and editable installs alike, and by importing
    ``anywhere``), the old name is the new module and warns."""
    code = f"""
        import json, sys, warnings
        sys.path.insert(0, {str(ROOT)!r})
        if sys.argv[-1] == "plain":  # take the legacy-names finder out
            sys.meta_path[:] = [f for f in sys.meta_path if "LegacyNames" not in repr(f)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import bridge.errors
        import anywhere.bridge.errors
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_namespace import duplicate_modules
        print(json.dumps({{
            "same": bridge.errors is anywhere.bridge.errors,
            "twice": duplicate_modules(dict(sys.modules)),
            "warnings": [str(w.message) for w in caught],
        }}))
    """
    without = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "plain"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(without.stdout)
    assert (
        not seen["same"]
        and "bridge.errors (already loaded as anywhere.bridge.errors)" in (seen["twice"])
    ), seen
    with_finder = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), "finder"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(with_finder.stdout)
    assert seen["same"] and seen["twice"] == [], seen
    assert any(
        "'bridge.errors' is deprecated" in w and "'anywhere.bridge.errors'" in w
        for w in seen["warnings"]
    ), seen


# --- the wheel, installed into a fresh virtual environment ------------------------------


def build_wheel(source: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with Anywhere's wheel and another distribution, ``other-storage``, that
    ships a top-level ``storage`` module. Anywhere's dependencies come from this test run's
    environment: its site-packages folders appended to sys.path by a .pth file (so the
    wheel's files come first, and their own .pth files, editable installs, stay off)."""
    base = tmp_path_factory.mktemp("namespace")
    source = base / "source"
    source.mkdir()
    for name in ("bridge", "plugins", "policy", "storage"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    other = base / "other"
    other.mkdir()
    (other / "storage.py").write_text('WHO = "other-storage"\n')
    (other / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "other-storage"\nversion = "1.0"\n'
        '[tool.setuptools]\npy-modules = ["storage"]\n'
    )
    wheels = base / "wheels"
    build_wheel(source, wheels)
    build_wheel(other, wheels)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-index", *map(str, sorted(wheels.glob("*.whl")))],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    site = Path(run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])",
                           cwd=base, python=str(python)).stdout.strip())  # fmt: skip
    ours = [path for path in sys.path if path.endswith(("site-packages", "dist-packages"))]
    (site / "zz_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    return venv


def test_the_wheel_holds_only_the_anywhere_package(installed: Path) -> None:
    (wheel,) = installed.parent.joinpath("wheels").glob("anywhere_bridge-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert tops - dist_info == {"anywhere", "anywhere_legacy_names.pth"}
    assert "anywhere/bridge/config.example.yaml" in zipfile.ZipFile(wheel).namelist()
    site = next(installed.glob("lib/python*/site-packages"))
    for old in OLD:
        assert not (site / old).exists(), f"{old}/ installed at the top of site-packages"
    assert (site / "storage.py").exists()  # the other distribution's


def test_anywhere_and_another_top_level_storage_both_work(installed: Path) -> None:
    result = run_python(
        """
        import json, warnings
        warnings.simplefilter("error")  # no deprecation on the new names
        import storage
        import anywhere.storage.database, anywhere.bridge.config
        from anywhere.policy.synapse_module import AnywherePolicyModule
        config = anywhere.bridge.config.example_defaults()
        print(json.dumps({
            "storage": storage.WHO,
            "policy_module": f"{AnywherePolicyModule.__module__}.{AnywherePolicyModule.__name__}",
            "anywhere_storage": anywhere.storage.database.__name__,
            "plugins": config["plugins"]["enabled"],
        }))
        """,
        cwd=installed,
        python=str(installed / "bin" / "python"),
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["storage"] == "other-storage"
    assert seen["policy_module"] == "anywhere.policy.synapse_module.AnywherePolicyModule"
    assert seen["anywhere_storage"] == "anywhere.storage.database"
    assert "basics" in seen["plugins"]
    for command in (["bin/anywhere", "--help"], ["bin/python", "-m", "anywhere", "--help"]):
        run = subprocess.run([str(installed / command[0]), *command[1:]], cwd=installed,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert run.returncode == 0 and "usage: anywhere" in run.stdout, run.stderr


def test_old_names_work_with_a_warning_naming_the_new_one(installed: Path) -> None:
    """What homeserver.yaml, third-party plugins and scripts wrote before: the same objects,
    a DeprecationWarning (and a logged warning, which Synapse shows) naming the new name;
    the other distribution's ``storage`` is not taken over."""
    result = run_python(
        """
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from synapse.util.module_loader import load_module
            cls, _ = load_module(
                {"module": "policy.synapse_module.AnywherePolicyModule",
                 "config": {"bridge_url": "http://127.0.0.1:9", "rules_file": "rules.yaml",
                            "bridge_token": "t"}},
                ("modules", "<item 0>"),
            )
            from bridge import hookimpl, EventContext
            import plugins.drive
        import anywhere.bridge, anywhere.policy.synapse_module, storage
        print(json.dumps({
            "same_class": cls is anywhere.policy.synapse_module.AnywherePolicyModule,
            "same_hookimpl": hookimpl is anywhere.bridge.hookimpl,
            "plugins_drive": plugins.drive.__name__,
            "spec": anywhere.policy.synapse_module.__spec__.name,
            "storage": storage.WHO,
            "warnings": [(w.category.__name__, str(w.message), w.filename) for w in caught
                         if "deprecated" in str(w.message) and "anywhere" in str(w.message)],
        }))
        """,
        cwd=installed,
        python=str(installed / "bin" / "python"),
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["same_class"] and seen["same_hookimpl"], seen
    assert seen["plugins_drive"] == "anywhere.plugins.drive"
    assert seen["spec"] == "anywhere.policy.synapse_module"  # the alias did not rename it
    assert seen["storage"] == "other-storage"
    messages = [message for _, message, _ in seen["warnings"]]
    assert {category for category, _, _ in seen["warnings"]} == {"AnywhereDeprecationWarning"}
    # `from bridge import ...` is blamed on the line that wrote it, not on importlib
    assert [where for _, message, where in seen["warnings"] if "'bridge' is" in message] == [
        "<string>"
    ]
    for old, new in [
        ("policy", "anywhere.policy"),
        ("policy.synapse_module", "anywhere.policy.synapse_module"),
        ("bridge", "anywhere.bridge"),
        ("plugins.drive", "anywhere.plugins.drive"),
    ]:
        assert any(f"{old!r} is deprecated" in m and f"use {new!r}" in m for m in messages), (
            old,
            messages,
        )
    assert "'policy.synapse_module' is deprecated" in result.stderr  # logged for operators


def test_python_dash_m_bridge_still_runs_the_cli(installed: Path) -> None:
    run = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "bridge", "--help"],
        cwd=installed, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and "usage: anywhere" in run.stdout, run.stderr
    assert "'bridge' is deprecated" in run.stderr and "use 'anywhere.bridge'" in run.stderr


def test_the_anywhere_package_is_the_one_top_level_name() -> None:
    assert anywhere.__name__ == "anywhere" and Path(anywhere.__file__).parent.name == "_anywhere"


def test_the_pytest_plugin_by_its_old_and_new_names(installed: Path) -> None:
    """Loaded for you (entry point ``anywhere``); by name with autoloading off, the new name
    and the old one (which warns, naming the new one) both give the fixtures."""
    tests = installed.parent / "plugin_tests"
    tests.mkdir(exist_ok=True)
    (tests / "test_uses_fixture.py").write_text(
        "def test_fixture(anywhere_enabled_plugins):\n"
        "    assert anywhere_enabled_plugins == ['basics']\n"
    )
    pytest_cmd = [str(installed / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    runs = {
        "autoload": ([], {}),
        "new": (
            ["-p", "anywhere.bridge.testing.fixtures"],
            {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        ),
        "old": (["-p", "bridge.testing.fixtures"], {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}),
    }
    for label, (args, env) in runs.items():
        run = subprocess.run(
            [*pytest_cmd, *args, "test_uses_fixture.py"],
            cwd=tests, capture_output=True, text=True, timeout=300, env={**os.environ, **env},
        )  # fmt: skip
        assert run.returncode == 0 and "1 passed" in run.stdout, (label, run.stdout, run.stderr)
        # pytest's assertion-rewriting import hook, in front of the legacy-names finder,
        # loads the -p module's own file under the old name; its imports then warn.
        output = run.stdout + run.stderr
        deprecated = "deprecated" in output and "use 'anywhere.bridge.testing." in output
        assert deprecated == (label == "old"), (label, run.stdout, run.stderr)


def test_python_dash_m_bridge_in_the_checkout_warns_instead_of_a_second_copy() -> None:
    """In the repository's folder the old name finds the folder itself; the .pth file that
    editable installs get too makes it the new package, with the warning."""
    run = subprocess.run(
        [sys.executable, "-m", "bridge", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0 and "usage: anywhere" in run.stdout, run.stderr
    assert "'bridge' is deprecated" in run.stderr, run.stderr
