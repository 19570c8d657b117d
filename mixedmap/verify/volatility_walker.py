"""volatility3's ``Intel32e`` layer (x86_64 4-level) over the vmcore's ``Elf64Layer``.

``FileLayer`` on the vmcore -> ``Elf64Layer`` (``framework/layers/elf.py``: PT_LOAD by
``p_paddr``) -> ``Intel32e`` with ``page_map_offset`` = CR3. Its documented rules that are
not the hardware's nor Linux's (volatility3 2.x, ``framework/layers/intel.py``), predicted
from the entries and counted apart, never hidden:

* ``Intel._page_is_valid``: only P (bit 0) is valid, so PROT_NONE PTEs are not mapped;
* ``Intel._get_valid_table``: a table whose 512 entries are all equal is treated as
  invalid ("Windows 10 maps unused pages as present");
* no 5-level layer (``Intel32e._maxvirtaddr`` 48), so LA57 is not walked;
* it checks no permission bits;
* its public ``translate`` (``Intel._mapping``, length 0) also refuses a PA that the
  physical layer does not hold, which a special mapping of a device PFN outside the image
  is; the page walk proper, ``Intel._translate``, is therefore what is compared.
"""

from __future__ import annotations

import importlib
import urllib.request
from collections.abc import Sequence
from typing import Any

from mixedmap.machine import Machine
from mixedmap.verify.base import Answer, Built

INSTALL_HINT = "pip install 'mixedmap[verify]' (or: pip install volatility3)"


class VolatilityWalker:
    """``Intel32e._translate`` per VA."""

    name = "volatility3 Intel32e"

    def __init__(self) -> None:
        self._layers: dict[str, Any] = {}
        self._ctxs: list[Any] = []

    def missing(self) -> str | None:
        try:
            importlib.import_module("volatility3.framework.layers.intel")
        except ImportError as exc:
            return f"volatility3 is not installed ({exc}); {INSTALL_HINT}"
        return None

    def cannot_walk(self, machine: Machine) -> str | None:
        if machine.arch != "x86_64":
            return "volatility3 has Intel layers only"
        if machine.fmt.mode != "4level":
            return "volatility3 has no 5-level layer (intel.py: Intel32e._maxvirtaddr = 48)"
        return None

    def rule(self, built: Built, va: int, leaf_entry: int, level: int) -> str | None:
        if not leaf_entry & 1:
            return "intel.py _page_is_valid: only P (bit 0) is valid, PROT_NONE is not"
        mem = built.machine.mem
        for step in built.pt.walk(va):
            table = mem.read(step.table_pa, 4096)
            if table == table[:8] * 512:
                return "intel.py _get_valid_table: a table of 512 equal entries is invalid"
        return None

    def _layer(self, built: Built) -> Any:
        key = f"{built.vmcore}:{built.pt.root}"
        if key in self._layers:
            return self._layers[key]
        contexts = importlib.import_module("volatility3.framework.contexts")
        physical = importlib.import_module("volatility3.framework.layers.physical")
        elf = importlib.import_module("volatility3.framework.layers.elf")
        intel = importlib.import_module("volatility3.framework.layers.intel")
        opener = urllib.request._opener  # type: ignore[attr-defined]
        ctx = contexts.Context()
        ctx.config["base.location"] = built.vmcore.resolve().as_uri()
        ctx.add_layer(physical.FileLayer(ctx, "base", "base"))
        ctx.config["elf.base_layer"] = "base"
        ctx.add_layer(elf.Elf64Layer(ctx, "elf", "elf"))
        ctx.config["cr3.memory_layer"] = "elf"
        ctx.config["cr3.page_map_offset"] = built.pt.root
        layer = intel.Intel32e(ctx, "cr3", "cr3")
        ctx.add_layer(layer)
        # FileLayer installs a process-wide urllib opener (resources.py); put ours back
        urllib.request.install_opener(opener)
        self._ctxs.append(ctx)
        self._layers[key] = layer
        return layer

    def translate(self, built: Built, vas: Sequence[int]) -> list[Answer]:
        exceptions = importlib.import_module("volatility3.framework.exceptions")
        layer = self._layer(built)
        out: list[Answer] = []
        for va in vas:
            try:
                pa, _size, under = layer._translate(va)
                out.append(Answer(pa=int(pa), detail=str(under)))
            except exceptions.InvalidAddressException as exc:
                out.append(Answer(pa=None, detail=f"{type(exc).__name__}: {exc}"))
        return out

    def close(self) -> None:
        if not self._ctxs:
            return
        for ctx in self._ctxs:
            ctx.layers["base"].destroy()
        self._ctxs.clear()
        self._layers.clear()
        intel = importlib.import_module("volatility3.framework.layers.intel")
        intel.Intel._translate_entry.cache_clear()
        intel.Intel._get_valid_table.cache_clear()
