"""drgn's Linux page-table walkers (``follow_phys``) over a mixedmap vmcore.

drgn opens the ELF core written by :mod:`mixedmap.vmcore` as a Linux kernel core without a
vmlinux (``Program.set_core_dump``; the VMCOREINFO note makes it a kernel program) and
``drgn.helpers.linux.mm._linux_helper_follow_phys(prog, pgd, va)`` - the C helper behind
``follow_phys(mm, va)`` (``libdrgn/linux_kernel_helpers.c``, ``linux_helper_follow_phys``) -
walks the tables with the arch's ``linux_kernel_pgtable_iterator_next``:

* x86_64 (``libdrgn/arch_x86_64.c``): 4 or 5 levels by VMCOREINFO
  ``NUMBER(pgtable_l5_enabled)``; an entry is present when bit 0 (PRESENT) is set, PSE
  (bit 7) ends the walk in a PDPTE/PDE, the frame is bits 51:12 (``ADDRESS_MASK``).
  Rule of its own: a PROT_NONE PTE (P clear, Linux's ``pte_present`` true) is not mapped.
* s390x (``libdrgn/arch_s390x.c``): the number of levels is taken from the TT bits of the
  first entry of the top table, invalid bits 0x400 (PTE) and 0x20 (segment/region), large
  segments (0x400, EDAT-1) and region-third entries. Rule of its own: a PTE with the
  invalid bit (PROT_NONE) is not mapped. Protection is not checked (drgn reads memory).

* ppc64 radix (``libdrgn/arch_ppc64.c``, ``linux_kernel_pgtable_iterator_create_ppc64``):
  the iterator first reads the kernel variable ``cur_cpu_spec->mmu_features`` and refuses
  unless ``MMU_FTR_TYPE_RADIX`` (0x40) is set. A vmcore without vmlinux has no such
  symbol, so this walker supplies that one variable: an object finder for
  ``cur_cpu_spec`` (a ``struct cpu_spec *``) pointing at an 8-byte memory segment holding
  0x40. Nothing else is supplied; the walk is drgn's.

drgn 0.3.0 cannot walk: ppc64 hash ("virtual address translation is only supported for
Radix MMU"), riscv64 ("virtual address translation is not implemented for RISC-V 64
architecture").
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from mixedmap.machine import Machine
from mixedmap.verify.base import Answer, Built
from mixedmap.verify.targets import VerifyTarget, target

INSTALL_HINT = "pip install 'mixedmap[verify]' (or: pip install drgn)"

#: Where this walker puts the fake ``struct cpu_spec`` for ppc64 (outside the direct map).
_CPU_SPEC_VA = 0xD000_0000_0000_0000
_MMU_FTR_TYPE_RADIX = 0x40
_NO_WALK = {
    "ppc64": "drgn 0.3.0 walks only the radix MMU on ppc64 (libdrgn/arch_ppc64.c: "
    '"virtual address translation is only supported for Radix MMU"); the hash MMU has no '
    "Linux page-table walker outside the kernel",
    "riscv64": "drgn 0.3.0: virtual address translation is not implemented for RISC-V 64",
}


class DrgnWalker:
    """``_linux_helper_follow_phys`` on the case's vmcore, one drgn Program per case."""

    name = "drgn follow_phys"

    def __init__(self) -> None:
        self._progs: dict[str, Any] = {}

    def _modules(self) -> tuple[Any, Any]:
        drgn = importlib.import_module("drgn")
        mm = importlib.import_module("drgn.helpers.linux.mm")
        return drgn, mm

    def missing(self) -> str | None:
        try:
            self._modules()
        except ImportError as exc:
            return f"drgn is not installed ({exc}); {INSTALL_HINT}"
        return None

    def cannot_walk(self, machine: Machine) -> str | None:
        if machine.arch == "ppc64" and machine.fmt.mode.startswith("radix"):
            return None
        if machine.arch in _NO_WALK:
            return _NO_WALK[machine.arch]
        t = target(machine.arch)
        if not isinstance(t, VerifyTarget):
            return t
        if not t.drgn:
            return f"drgn: no Linux page-table walker declared for {machine.arch} (its VerifyTarget.drgn is False)"
        return None

    def rule(self, built: Built, va: int, leaf_entry: int, level: int) -> str | None:
        machine = built.machine
        last = len(machine.fmt.levels) - 1
        if machine.arch == "x86_64" and not leaf_entry & 1:
            return "arch_x86_64.c: only PRESENT (bit 0) is present, PROT_NONE is not"
        if machine.arch == "s390x":
            if level == last and leaf_entry & 0x400:
                return "arch_s390x.c: PAGE_INVALID (0x400) set, PROT_NONE is not mapped"
            if level < last and leaf_entry & 0x20:
                return "arch_s390x.c: SEGMENT_INVALID (0x20) set"
        return None

    def open(self, built: Built) -> Any:
        """A drgn Program over ``built``'s vmcore (cached per file)."""
        key = str(built.vmcore)
        if key not in self._progs:
            drgn, _ = self._modules()
            prog = drgn.Program()
            prog.set_core_dump(key)
            if built.machine.arch == "ppc64":
                _supply_cur_cpu_spec(drgn, prog, built.machine.fmt.byteorder)
            self._progs[key] = prog
        return self._progs[key]

    def translate(self, built: Built, vas: Sequence[int]) -> list[Answer]:
        drgn, mm = self._modules()
        prog = self.open(built)
        t = target(built.machine.arch)
        base = t.base(built.machine.fmt.mode) if isinstance(t, VerifyTarget) else 0
        pgd = base + built.pt.root_pa
        follow = mm._linux_helper_follow_phys
        out: list[Answer] = []
        for va in vas:
            try:
                out.append(Answer(pa=int(follow(prog, pgd, va))))
            except drgn.FaultError as exc:
                out.append(Answer(pa=None, detail=f"FaultError: {exc}"))
        return out

    def close(self) -> None:
        self._progs.clear()


def _supply_cur_cpu_spec(drgn: Any, prog: Any, byteorder: str) -> None:
    """``cur_cpu_spec`` with ``mmu_features = MMU_FTR_TYPE_RADIX``: the one kernel variable
    drgn's ppc64 walker reads (arch_ppc64.c, "Identify the MMU type")."""
    data = _MMU_FTR_TYPE_RADIX.to_bytes(8, "big" if byteorder == "big" else "little")

    def read(address: int, count: int, offset: int, physical: bool) -> bytes:
        return data[offset : offset + count]

    prog.add_memory_segment(_CPU_SPEC_VA, len(data), read, False)
    ulong = prog.int_type("unsigned long", 8, False)
    spec = prog.struct_type("cpu_spec", 8, [drgn.TypeMember(ulong, "mmu_features", 0)])
    ptr = prog.pointer_type(spec)

    def find(prog_: Any, name: str, flags: Any, filename: str | None) -> Any:
        return drgn.Object(prog_, ptr, value=_CPU_SPEC_VA) if name == "cur_cpu_spec" else None

    prog.register_object_finder("mixedmap-cur_cpu_spec", find, enable_index=0)
