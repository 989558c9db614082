"""Loading plugins from entry points and calling their hooks one plugin at a time."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .api import contract_problem
from .errors import PluginLoadError

if TYPE_CHECKING:
    from .config import Config
    from .namespaces import Namespaces

ENTRY_POINT_GROUP = "anywhere.plugins"


def available_plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


class PluginManager:
    """pluggy's manager plus per-plugin calls, so one plugin's failure stays its own."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    def register(self, plugin: Any, name: str) -> None:
        """Register ``plugin`` and add the hook specifications it offers to others
        (``anywhere_hookspecs``). Hooks of plugins loaded later are checked by
        :meth:`check_hooks` once all are in, so that a plugin may implement an extension
        hook of a plugin loaded after it."""
        needed = getattr(plugin, "anywhere_contract", None)
        if needed is not None:
            problem = contract_problem(name, needed)
            if problem:
                raise PluginLoadError(problem)
        try:
            self.pm.register(plugin, name=name)
            for module in self._offered_hookspecs(name):
                self.pm.add_hookspecs(module)
        except (ValueError, pluggy.PluginValidationError) as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginLoadError(f"plugin {name!r} could not be registered: {exc}") from exc

    def _offered_hookspecs(self, name: str) -> list[Any]:
        for impl in self.pm.hook.anywhere_hookspecs.get_hookimpls():
            if impl.plugin_name == name:
                given = impl.function()
                if given is None:
                    return []
                return list(given) if isinstance(given, list | tuple) else [given]
        return []

    def check_hooks(self) -> None:
        """Refuse an ``anywhere_`` hook implementation that no loaded plugin specifies
        (misspelt, or an extension hook of a plugin that is not enabled)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin)
            raise PluginLoadError(
                f"plugin {name!r} implements a hook nobody declares: {exc}; check "
                "its spelling (bridge/hookspecs.py, docs/plugins.md), or enable the plugin "
                "that offers it, or mark the implementation @hookimpl(optionalhook=True)"
            ) from exc

    def load(self, config: Config, core: object) -> None:
        """Register ``core``, the runtime's own plugin (its owner makes it: see
        :func:`anywhere.bridge.runtime.load_plugins`), and the enabled ones
        (``plugins.enabled``), apply and validate their config sections, and refuse
        overlapping namespaces. Plugins registered before (a test's own, a core) are kept."""
        from .config import ConfigSection, apply_plugin_sections
        from .registration import check_namespaces

        if "core" not in self.names():
            self.register(core, "core")
        self.load_enabled(config["plugins.enabled"])
        sections: dict[str, ConfigSection] = {}
        for name, section in self.call_each("anywhere_config_section"):
            if section is not None:
                sections[name] = section
        apply_plugin_sections(config, sections)
        check_namespaces(config, self.namespaces(config))

    def namespaces(self, config: Config) -> dict[str, Namespaces]:
        """``{plugin: Namespaces}`` of the plugins that claim users or aliases."""
        return {name: ns for name, ns in self.call_each("anywhere_namespaces", config=config) if ns}

    def load_enabled(self, enabled: list[str]) -> None:
        """Load each enabled plugin by its entry-point name, or stop with the reason."""
        available = available_plugins()
        for name in enabled:
            if name in self.names():
                continue
            entry = available.get(name)
            if entry is None:
                known = ", ".join(sorted(available)) or "none"
                raise PluginLoadError(
                    f"plugin {name!r} (plugins.enabled) is not installed: no entry point "
                    f"{name!r} in group {ENTRY_POINT_GROUP!r}; installed plugins: {known}. "
                    "Install its package or remove it from plugins.enabled"
                )
            try:
                plugin = entry.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} ({entry.value}) failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            self.register(plugin, name)
        self.check_hooks()

    def names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def impls(self, hook_name: str) -> Iterator[tuple[str, Any]]:
        """(plugin name, function) for each implementation of a hook, in call order (none
        for a hook no loaded plugin declares or implements)."""
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return
        for impl in caller.get_hookimpls()[::-1]:
            yield impl.plugin_name, impl.function

    def call_each(self, hook_name: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call a synchronous hook on every plugin; exceptions name the plugin."""
        for name, func in self.impls(hook_name):
            try:
                yield name, func(**_accepted(func, kwargs))
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc

    def collect(
        self,
        hook_name: str,
        what: str,
        taken: dict[str, str] | None = None,
        *,
        key: Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> dict[str, tuple[str, Any]]:
        """``{name: (plugin, value)}`` merged from a hook whose implementations return
        ``{name: value}`` dicts: the one place contributions to an extension hook are
        gathered. A name two plugins give (or one of ``taken``, ``{name: owner}``) stops
        start-up with both plugins named; ``what`` says what the names are in that
        message ("call mode", "blob store for the URL scheme"). ``key`` makes names
        that differ only by it (``str.lower``) the same name."""
        owners = dict(taken or {})
        found: dict[str, tuple[str, Any]] = {}
        for plugin, given in self.call_each(hook_name, **kwargs):
            if given is not None and not isinstance(given, dict):
                raise PluginLoadError(
                    f"plugin {plugin!r}: {hook_name} must return a dict, found {given!r}"
                )
            for name, value in (given or {}).items():
                if key is not None:
                    name = key(name) if isinstance(name, str) else name
                if name in owners:
                    raise PluginLoadError(
                        f"plugin {plugin!r} gives the {what} {name!r}, which plugin "
                        f"{owners[name]!r} gives already: keep one of them"
                    )
                owners[name], found[name] = plugin, (plugin, value)
        return found

    async def acall_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        results = []
        for name, result in self.call_each(hook_name, **kwargs):
            if inspect.isawaitable(result):
                result = await result
            results.append((name, result))
        return results

    async def first_result(self, hook_name: str, **kwargs: Any) -> Any:
        for _, func in self.impls(hook_name):
            result = func(**_accepted(func, kwargs))
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return result
        return None


def _accepted(func: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """pluggy passes only the arguments an implementation names; so do we."""
    params = inspect.signature(func).parameters
    return {k: v for k, v in kwargs.items() if k in params}
