"""Plugin discovery: entry points in the group `ipctool`, loaded one by one.

pluggy's own `load_setuptools_entrypoints` stops at the first broken plugin, so
this loop loads each entry point itself: a plugin that fails to import, to
register, or to answer its hook becomes one warning naming its distribution.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cache
from typing import Any

import pluggy

from ipctool import hookspecs
from ipctool.contract import NAME_PATTERN, Mechanism
from ipctool.entrypoints import entry_points as find_entry_points
from ipctool.entrypoints import normalize
from ipctool.errors import describe, say

ENTRY_POINT_GROUP = "ipctool"
LOAD_ENV = "IPCTOOL_LOAD_PLUGINS"  # comma-separated: load only these ("" loads none)
DISABLE_ENV = "IPCTOOL_DISABLE_PLUGINS"  # comma-separated: never load these
# Top-level names the core uses now or will: a mechanism may never take one, so no
# plugin is shadowed when the core's command arrives.
RESERVED_NAMES = frozenset(
    {"plugins", "help", "ls", "clean", "limits", "top", "bridge", "version"}
)


class Plugin:
    def __init__(self, name: str, entry_point: Any = None) -> None:
        self.name = name  # the entry-point name
        self.entry_point = entry_point
        self.module: Any = None
        self.mechanisms: list[Mechanism] = []

    # Distribution name and version are read only when shown or matched.
    @property
    def distribution(self) -> str:
        dist = getattr(self.entry_point, "dist", None)
        return dist.name if dist else "unknown"

    @property
    def version(self) -> str:
        dist = getattr(self.entry_point, "dist", None)
        return dist.version if dist else "?"

    @property
    def key(self) -> str:
        """Unique among registered plugins, even when two share an entry-point name."""
        return f"{self.distribution}:{self.name}" if self.entry_point else self.name

    @property
    def label(self) -> str:
        return f"{self.distribution} {self.version} (plugin {self.name!r})"


class Registry:
    """What was loaded: plugins, the mechanism each name runs, conflicts, warnings."""

    # Plain classes here and in entrypoints: dataclass creation costs start-up time.
    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.manager = manager
        self.plugins: list[Plugin] = []
        self.mechanisms: dict[str, Mechanism] = {}
        self.providers: dict[str, Plugin] = {}
        self.conflicts: dict[str, list[Plugin]] = {}
        self.warnings: list[str] = []
        self.failures: list[str] = []  # plugins that could not be used at all

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.warnings.append(message)

    def conflict_message(self, name: str) -> str:
        claimants = " and ".join(p.label for p in self.conflicts[name])
        return (
            f"mechanism {name!r} is claimed by {claimants}; disable one with {DISABLE_ENV}=<plugin>"
        )


def _names(env: str) -> set[str] | None:
    value = os.environ.get(env)
    if value is None:
        return None
    return {normalize(n.strip()) for n in value.split(",") if n.strip()}


def _wanted(plugin: Plugin) -> bool:
    """Env switches name plugins by entry-point or distribution name."""
    only, disabled = _names(LOAD_ENV), _names(DISABLE_ENV) or set()
    if only is None and not disabled:
        return True
    names = {normalize(plugin.name), normalize(plugin.distribution)}
    return not names & disabled and (only is None or bool(names & only))


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _register(registry: Registry, plugin: Plugin, load: Any) -> None:
    """Import, register and ask one plugin; any failure is a warning, never a crash."""
    manager = registry.manager
    try:
        plugin.module = load()
        manager.register(plugin.module, name=plugin.key)
        manager.check_pending()  # a hook with no spec: misspelled or from a newer ipctool
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit is broken too
        if plugin.module is not None and manager.is_registered(plugin.module):
            manager.unregister(plugin.module)
        registry.fail(f"plugin {plugin.label} failed to load: {describe(exc)}; skipped")
        return
    for impl in manager.hook.ipctool_mechanisms.get_hookimpls():
        if impl.plugin is not plugin.module:
            continue
        try:
            found = _checked_mechanisms(impl.function())
        except (Exception, SystemExit) as exc:
            manager.unregister(plugin.module)
            registry.fail(
                f"plugin {plugin.label} gave no usable mechanisms: {describe(exc)}; skipped"
            )
            return
        plugin.mechanisms.extend(found)
    registry.plugins.append(plugin)


def _checked_mechanisms(answer: object) -> list[Mechanism]:
    """A plugin's ipctool_mechanisms() answer, if it is a list of valid records."""
    if not isinstance(answer, Iterable):
        raise TypeError(f"not a list of Mechanism: {answer!r}")
    found = []
    for mech in answer:
        if not isinstance(mech, Mechanism) or not NAME_PATTERN.match(mech.name):
            raise TypeError(f"not a valid Mechanism: {mech!r}")
        found.append(mech)
    return found


def _claim(registry: Registry, plugin: Plugin, mech: Mechanism) -> None:
    name = mech.name
    if name in RESERVED_NAMES:
        registry.warnings.append(f"plugin {plugin.label}: {name!r} is reserved; skipped")
    elif name in registry.conflicts:
        registry.conflicts[name].append(plugin)
    elif name in registry.providers:
        registry.conflicts[name] = [registry.providers.pop(name), plugin]
        del registry.mechanisms[name]
    else:
        registry.providers[name] = plugin
        registry.mechanisms[name] = mech


def build_registry(entry_points: Any = None) -> Registry:
    """Discover and load plugins. `entry_points` (for tests) replaces discovery."""
    registry = Registry(manager=new_manager())
    if entry_points is None:
        entry_points = find_entry_points(ENTRY_POINT_GROUP)
    for ep in entry_points:
        plugin = Plugin(name=ep.name, entry_point=ep)
        if _wanted(plugin):
            _register(registry, plugin, ep.load)
    for plugin in registry.plugins:
        for mech in plugin.mechanisms:
            _claim(registry, plugin, mech)
    for name in registry.conflicts:
        registry.warnings.append(registry.conflict_message(name))
    return registry


@cache
def get_registry() -> Registry:
    return build_registry()


def warn(message: str) -> None:
    say(f"ipctool: warning: {message}")
