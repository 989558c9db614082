"""Move Anywhere's installed modules under one ``anywhere`` package (issue 15).

The repository keeps its folders ``bridge/ plugins/ policy/ storage/``; pyproject.toml and
setup.py map them to ``anywhere.bridge``, ``anywhere.plugins``, ... when installed. This
script rewrites, mechanically, every reference to the old module names in the tracked
(and untracked, not ignored) files of a checkout:

* ``from bridge... import`` / ``from plugins... import`` ... at the start of a line (code,
  docstrings and Markdown code blocks alike) become ``from anywhere.bridge...``;
* a dotted name that is a real module of the four folders (``policy.synapse_module``,
  ``bridge.testing.fixtures:...``, ``plugins.drive.sync``), optionally followed by an
  attribute, becomes ``anywhere.<name>``: in Python only inside strings and comments, in
  other text files anywhere. Config keys (``bridge.permissions``, ``policy.rules``,
  ``plugins.settings``) are not modules and stay;
* ``python -m bridge`` / ``"-m", "bridge"`` become ``python -m anywhere``;
* ``resources.files("bridge")`` becomes ``resources.files("anywhere.bridge")``, and
  ``import_module(f"plugins.{name}...")`` becomes ``import_module(f"anywhere.plugins...")``;
* pyproject.toml loses its ``packages.find`` and ``package-data`` tables (setup.py maps the
  folders now).

It refuses (exit 2) what it cannot rewrite safely (``import bridge.x`` statements) and
never touches the hand-made files of the move (bridge/_anywhere/, setup.py,
docs/upgrading.md, tests/test_namespace.py, this script). Running it twice changes
nothing the second time. Usage::

    python scripts/namespace_move.py [REPO]        # rewrite in place, list changed files
    python scripts/namespace_move.py --check REPO  # exit 1 if anything would change

Applying the move to a checkout (then this script may be deleted)::

    git checkout namespace -- scripts/namespace_move.py setup.py bridge/_anywhere \
        docs/upgrading.md tests/test_namespace.py
    .venv/bin/python scripts/namespace_move.py
    .venv/bin/ruff check --fix . ; .venv/bin/ruff format .
    rm -rf anywhere_bridge.egg-info   # stale entry points, found through the cwd
    .venv/bin/pip install -e '.[test]' -e examples/hello -e examples/acme-roaming \
        -e examples/mirror-store
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

TOP = ("bridge", "plugins", "policy", "storage")
NEW = "anywhere"
# Files written by hand for the move: they already use the new names and speak of the old
# ones on purpose.
SKIP_PREFIXES = (
    "bridge/_anywhere/",
    "setup.py",
    "docs/upgrading.md",
    "tests/test_namespace.py",
    "scripts/namespace/",
)
TEXT_SUFFIXES = {".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ini", ".sh", ".json", ".js"}
# Dotted names that are modules but, written alone, are config keys in this project.
CONFIG_KEYS_THAT_ARE_MODULES = {"policy.rules"}
# Modules named like an attribute of the runtime object that code and docs call `bridge`
# (`bridge.config["..."]`, `await bridge.jobs.enqueue(...)`): rewritten only where the text
# clearly means the module (a Sphinx role, a whole string, or a class after it).
BRIDGE_ATTRIBUTES = {
    "bridge.commands",
    "bridge.config",
    "bridge.events",
    "bridge.inbox",
    "bridge.jobs",
}
ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc):`~?$")

FROM_IMPORT = re.compile(rf"^(\s*(?:>>> |\.\.\. )?from )({'|'.join(TOP)})(?=[.\s])", re.M)
TOPS = "|".join(TOP)
# `import bridge [as b]` -> `from anywhere import bridge [as b]` (binds the same name);
# `import bridge.x as y` -> `import anywhere.bridge.x as y`; `import bridge.x` is refused.
IMPORT_TOP = re.compile(rf"^(\s*)import ({TOPS})([ \t]+as[ \t]+\w+)?(?=[ \t]*(?:#|$))", re.M)
IMPORT_SUB_AS = re.compile(rf"^(\s*)import ((?:{TOPS})(?:\.\w+)+\s+as\s+\w+)", re.M)
BARE_IMPORT = re.compile(rf"^\s*import ({TOPS})\b", re.M)
DOTTED = re.compile(rf"(?<![\w./\\-])((?:{'|'.join(TOP)})(?:\.[A-Za-z_]\w*)+)")
DASH_M = re.compile(rf"(-m\s+|\"-m\",\s*\"|'-m',\s*')({'|'.join(TOP)})\b(?!\.)")
# `import_module(f"plugins.{name}.hookspecs")`: a computed module name.
IMPORT_CALL = re.compile(rf"((?:import_module|__import__)\(\s*[rf]*[\"'])({TOPS})(?=[.\"'])")
RESOURCES = re.compile(rf"(files\(\s*[\"'])({'|'.join(TOP)})([\"'])")


def module_names(root: Path) -> set[str]:
    """Every importable dotted name under the four folders, from the files on disk."""
    names: set[str] = set()
    for top in TOP:
        for path in (root / top).rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            if "_anywhere" in parts:
                continue
            # Only names whose every package level has an __init__.py are importable.
            if all(
                (root.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))
            ):
                names.add(".".join(parts))
    return names


def means_module(match: re.Match[str], whole: bool) -> bool:
    text, start, end = match.string, match.start(1), match.end(1)
    if ROLE.search(text[max(0, start - 12) : start]):
        return True
    before, after = text[start - 1 : start], text[end : end + 1]
    if whole and before in "\"'" and before and after == before:
        return True
    return not whole and match.group(1).split(".")[2][:1].isupper()


def rewrite_dotted(text: str, modules: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        parts = name.split(".")
        for end in range(len(parts), 1, -1):
            prefix = ".".join(parts[:end])
            if prefix in modules:
                if prefix in CONFIG_KEYS_THAT_ARE_MODULES and end == len(parts):
                    return name
                if prefix in BRIDGE_ATTRIBUTES and not means_module(match, end == len(parts)):
                    return name
                return f"{NEW}.{name}"
        return name

    return DOTTED.sub(replace, text)


def rewrite_text(text: str, modules: set[str]) -> str:
    text = FROM_IMPORT.sub(lambda m: f"{m.group(1)}{NEW}.{m.group(2)}", text)
    text = DASH_M.sub(lambda m: f"{m.group(1)}{NEW}", text)
    text = RESOURCES.sub(lambda m: f"{m.group(1)}{NEW}.{m.group(2)}{m.group(3)}", text)
    return rewrite_dotted(text, modules)


def rewrite_python(text: str, modules: set[str]) -> str:
    """Imports everywhere; dotted module names only inside strings and comments (in code,
    ``bridge.config`` is an attribute of a variable called ``bridge``)."""
    original = text
    text = FROM_IMPORT.sub(lambda m: f"{m.group(1)}{NEW}.{m.group(2)}", text)
    text = IMPORT_TOP.sub(
        lambda m: f"{m.group(1)}from {NEW} import {m.group(2)}{m.group(3) or ''}", text
    )
    text = IMPORT_SUB_AS.sub(lambda m: f"{m.group(1)}import {NEW}.{m.group(2)}", text)
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    spans: list[tuple[int, int]] = []
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    for token in tokens:
        if token.type in (tokenize.STRING, tokenize.COMMENT) or token.type == getattr(
            tokenize, "FSTRING_MIDDLE", -1
        ):
            start = offsets[token.start[0] - 1] + token.start[1]
            end = offsets[token.end[0] - 1] + token.end[1]
            spans.append((start, end))
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        piece = text[start:end]
        piece = DASH_M.sub(lambda m: f"{m.group(1)}{NEW}", piece)
        out.append(rewrite_dotted(piece, modules))
        last = end
    out.append(text[last:])
    text = rewrap("".join(out), original)
    # `"-m", "bridge"` spans two string tokens; `files("bridge")` is a call around one.
    text = DASH_M.sub(lambda m: f"{m.group(1)}{NEW}", text)
    text = IMPORT_CALL.sub(lambda m: f"{m.group(1)}{NEW}.{m.group(2)}", text)
    return RESOURCES.sub(lambda m: f"{m.group(1)}{NEW}.{m.group(2)}{m.group(3)}", text)


LIMIT = 100  # ruff's line length in pyproject.toml


def split_at(line: str, limit: int) -> int | None:
    """The index of the last space before ``limit`` in the line's text, if any."""
    indent = len(line) - len(line.lstrip())
    cut = line.rfind(" ", indent + 1, limit)
    return cut if cut > indent else None


def rewrap(text: str, original: str) -> str:
    """Break the lines this rewrite made longer than ruff allows: comments and docstrings at
    a space (the continuation indented like the line), a one-line string inside brackets
    into two literals (ruff format then lays them out). Code lines are left to ruff format."""
    if all(len(line) <= LIMIT for line in text.splitlines()):
        return text
    was_long = {line for line in original.splitlines() if len(line) > LIMIT}
    strings: dict[int, tokenize.TokenInfo] = {}
    depth_at: dict[int, int] = {}
    depth = 0
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif token.type == tokenize.STRING:
            for row in range(token.start[0], token.end[0] + 1):
                strings[row] = token
            depth_at[token.start[0]] = depth
    out: list[str] = []
    for row, line in enumerate(text.splitlines(keepends=True), start=1):
        body = line.rstrip("\n")
        if len(body) <= LIMIT or body in was_long:
            out.append(line)
            continue
        indent = body[: len(body) - len(body.lstrip())]
        token = strings.get(row)
        stripped = body.lstrip()
        cut = split_at(body, LIMIT)
        if cut is None:
            out.append(line)
        elif stripped.startswith("#"):
            out.append(f"{body[:cut]}\n{indent}# {body[cut + 1 :]}\n")
        elif token is not None and token.string.endswith(('"""', "'''")):
            quote = token.string.find(token.string[-3:])
            start_col = token.start[1] + quote + 3 if row == token.start[0] else 0
            if cut > start_col:
                bullet = "  " if stripped.startswith(("- ", "* ")) else ""
                out.append(f"{body[:cut]}\n{indent}{bullet}{body[cut + 1 :]}\n")
            else:
                out.append(line)
        elif token is not None and row == token.start[0] == token.end[0] and depth_at[row] > 0:
            prefix = re.match(r"[A-Za-z]*", token.string).group(0)
            quote = token.string[len(prefix)]
            start, end = token.start[1], token.end[1]
            if start + len(prefix) < cut < end - 1 and "{" not in body[cut - 1 : cut + 1]:
                first = body[: cut + 1] + quote
                second = f"{indent}    {prefix}{quote}{body[cut + 1 :]}"
                out.append(f"{first}\n{second}\n")
            else:
                out.append(line)
        else:
            out.append(line)
    return "".join(out)


PACKAGES_FIND = re.compile(
    r"\[tool\.setuptools\.packages\.find\]\n(?:[^\[\n].*\n|\n)*?(?=\[|\Z)", re.M
)
PACKAGE_DATA = re.compile(r"\[tool\.setuptools\.package-data\]\n(?:[^\[\n].*\n|\n)*?(?=\[|\Z)")
SETUP_PY_NOTE = (
    "# Packages: setup.py maps the folders bridge/ plugins/ policy/ storage/ to anywhere.bridge,\n"
    "# anywhere.plugins, ... so that only `anywhere` is installed at the top level (issue 15).\n\n"
)


def rewrite_pyproject(text: str, modules: set[str]) -> str:
    text = rewrite_text(text, modules)
    if "[tool.setuptools.packages.find]" in text:
        text = PACKAGES_FIND.sub(SETUP_PY_NOTE, text, count=1)
    text = PACKAGE_DATA.sub("", text, count=1)
    if "[tool.ruff.lint.isort]" not in text and "[tool.ruff.lint]" in text:
        # Imports of anywhere.* are this project's own: sorted after third-party ones.
        text = text.rstrip("\n") + '\n\n[tool.ruff.lint.isort]\nknown-first-party = ["anywhere"]\n'
    return text


README_LAYOUT_END = "tests/     end-to-end tests against a real Synapse, and unit tests\n```\n"
README_INSTALLED = (
    "\nInstalled, the four folders are one package: `anywhere.bridge`, `anywhere.plugins`,\n"
    "`anywhere.policy`, `anywhere.storage` (setup.py maps them; `anywhere` itself is\n"
    "`bridge/_anywhere/`), so nothing else lands at the top of site-packages. The old\n"
    "names still work for one release, with a warning: see\n"
    "[docs/upgrading.md](docs/upgrading.md).\n"
)


def rewrite_readme(text: str, modules: set[str]) -> str:
    text = rewrite_text(text, modules)
    if "docs/upgrading.md" not in text:
        if README_LAYOUT_END not in text:
            print("README.md: Layout block not found; add the note on the installed names by hand")
        else:
            text = text.replace(README_LAYOUT_END, README_LAYOUT_END + README_INSTALLED, 1)
    return text


# Code that derives module names from file paths: not a name to rewrite but logic to
# change. (file, old, new), applied after the rewrite; reported when the old text is gone.
HAND_EDITS = [
    (
        "tests/test_import_graph.py",
        """    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)
""",
        """    if parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] in PACKAGES:
        parts.insert(0, "anywhere")  # installed as anywhere.bridge, anywhere.plugins, ...
    return ".".join(parts)
""",
    ),
    ("tests/test_import_graph.py", 'within(name, "plugins")', 'within(name, "anywhere.plugins")'),
    (
        "tests/test_import_graph.py",
        'return parts[1] if parts[0] == "plugins" and len(parts) > 1 else None',
        'return parts[2] if parts[:2] == ["anywhere", "plugins"] and len(parts) > 2 else None',
    ),
]


def hand_edits(root: Path, rewritten: dict[Path, str]) -> None:
    for rel, old, new in HAND_EDITS:
        path = root / rel
        if not path.exists():
            continue
        text = rewritten.get(path, path.read_text("utf-8"))
        if old in text:
            rewritten[path] = text.replace(old, new)
        elif new not in text:
            print(f"{rel}: expected text not found, check by hand: {old.strip()[:60]!r}")


def files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted({line for line in out.splitlines() if line})


def transform(root: Path, check: bool = False) -> list[str]:
    modules = module_names(root)
    changed: list[str] = []
    refused: list[str] = []
    rewritten: dict[Path, str] = {}
    for rel in files(root):
        path = root / rel
        if rel.startswith(SKIP_PREFIXES) or not path.is_file():
            continue
        if rel.startswith(("bench/results", "tests/calls/browser/node_modules")):
            continue
        suffix = path.suffix
        if suffix not in TEXT_SUFFIXES and suffix != ".py":
            continue
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        if suffix == ".py":
            new = rewrite_python(text, modules)
            for match in BARE_IMPORT.finditer(new):
                line = new.count("\n", 0, match.start()) + 1
                refused.append(f"{rel}:{line}: `import {match.group(1)}.x` (write `from ...`)")
        elif rel == "pyproject.toml":
            new = rewrite_pyproject(text, modules)
        elif rel == "README.md":
            new = rewrite_readme(text, modules)
        else:
            new = rewrite_text(text, modules)
        if new != text:
            changed.append(rel)
            rewritten[path] = new
    if refused:
        print("cannot rewrite safely, change these by hand first:", *refused, sep="\n  ")
        raise SystemExit(2)  # before writing anything
    hand_edits(root, rewritten)
    for path in rewritten:
        rel = str(path.relative_to(root))
        if rel not in changed:
            changed.append(rel)
    if not check:
        for path, new in rewritten.items():
            path.write_text(new, "utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    root = Path(args.repo).resolve()
    if not (root / "bridge" / "_anywhere" / "__init__.py").exists():
        print(
            f"{root}: bridge/_anywhere/ is missing; copy the hand-made files first "
            "(see docs/upgrading.md)",
            file=sys.stderr,
        )
        return 2
    changed = transform(root, check=args.check)
    print("\n".join(changed) if changed else "nothing to change")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
