"""The registered applications, found through Python entry points.

An app is a package exposing `Pipeline` (and its `Config`), registered by its distribution under the
entry-point group `catalogue.apps`; an optional bench spec is registered under `catalogue.bench`:

    [project.entry-points."catalogue.apps"]
    colorize = "apps.colorize:Pipeline"
    [project.entry-points."catalogue.bench"]
    colorize = "apps.colorize.bench:BENCH"

Core never imports an app by name: any installed package can add one the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import metadata

APP_GROUP = "catalogue.apps"
BENCH_GROUP = "catalogue.bench"


def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)  # the first distribution on sys.path wins, as imports do
    return found


class Apps(Mapping):
    """name -> Pipeline class; each app is imported on first access, so listing them imports none."""

    def __init__(self, group: str = APP_GROUP):
        self.group = group
        self._points = _entry_points(group)

    def __getitem__(self, name: str):
        key = name.replace("-", "_")
        if key not in self._points:
            raise KeyError(f"Unknown app {name!r}. Registered apps: {', '.join(sorted(self._points)) or 'none'}")
        return self._points[key].load()

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.replace("-", "_") in self._points

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._points))

    def __len__(self) -> int:
        return len(self._points)

    def module_name(self, name: str) -> str:
        """The app's package (without importing it): where its docstring and files live."""
        return self._points[name.replace("-", "_")].value.split(":")[0]


def apps() -> Apps:
    """The apps registered now (re-read each call, so packages installed meanwhile are found)."""
    return Apps()


def bench_spec(name: str):
    """The app's BenchSpec, or None when the app registers none."""
    points = _entry_points(BENCH_GROUP)
    key = name.replace("-", "_")
    return points[key].load() if key in points else None
