"""The plugin host: hookspecs, the manager that loads entry points, the per-arch registry."""

from __future__ import annotations

import pluggy

#: pluggy project name and entry-point group.
NAME = "mixedmap"
#: Bumped when the plugin contract changes incompatibly; ArchSpec.api_version must equal it.
API_VERSION = 1

hookimpl = pluggy.HookimplMarker(NAME)

__all__ = ["API_VERSION", "NAME", "hookimpl"]
