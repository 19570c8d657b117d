"""unicorn's emulated x86_64 CPU (QEMU's TCG MMU) walking mixedmap's tables at CPL3.

The tables are copied into unicorn's physical memory, paging is switched on as Linux runs
it (EFER.LME|LMA|NXE, CR4.PAE [+LA57], CR0.PG|WP|PE, CR3 = the root) and a flat GDT with
DPL3 code and data segments is loaded, so CS=0x23 and every access is a user access. For
each VA the CPU then does, through QEMU's ``x86_cpu_tlb_fill``/``mmu_translate``
(target/i386/tcg/sysemu/excp_helper.c):

* a load (``mov rax, [rbx]``): the value read is the tag this walker wrote at the
  expected PA, so the PA the CPU reached is the value it loaded;
* a store (``mov [rbx], rax``) and an instruction fetch at the VA's 4 KiB page start
  (``UC_HOOK_CODE`` fires once the instruction was fetched; at the page start its bytes
  cannot run into the next page);
* afterwards the leaf entry in unicorn's memory must have A set, and D set if the store
  was allowed.

What the CPU must allow is taken from the prot that was asked for, by x86's
``protection_map`` semantics (``arch/x86/mm/pgprot.c``): readable unless PROT_NONE,
writable only when shared and writable (a private writable mapping is COW, read-only in
the PTE), executable only with PROT_EXEC (NX otherwise). A fault is the #PF (or the double
fault it turns into without an IDT) reported by ``UC_HOOK_INTR``; the CPU state is
restored from a saved context before every access. Rule of the hardware's own, counted
apart: PROT_NONE PTEs have P clear, so every access faults.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Sequence
from typing import Any

from mixedmap.machine import Machine
from mixedmap.verify.base import Answer, Built

INSTALL_HINT = "pip install 'mixedmap[verify]' (or: pip install unicorn)"
_CODE = bytes.fromhex("488b03488903")  # mov rax,[rbx]; mov [rbx],rax
_EFER = 0xC0000080
_A, _D = 1 << 5, 1 << 6


def load_memory(uc: Any, machine: Machine, pas: Sequence[int]) -> None:
    """Map and fill unicorn's physical memory: every region, every stored block, and the
    4 KiB page of each PA in ``pas``, as few ``mem_map`` calls as possible (unicorn keeps
    its regions in a sorted array, so one call per page would cost O(pages^2))."""
    pages: set[int] = set()
    for r in machine.regions:
        pages.update(range(r.start >> 12, r.end >> 12))
    blocks = list(machine.mem.blocks())
    pages.update(addr >> 12 for addr, _ in blocks)
    pages.update(pa >> 12 for pa in pas)
    order = sorted(pages)
    if not order:
        return
    start = prev = order[0]
    for page in [*order[1:], -1]:
        if page != prev + 1:
            uc.mem_map(start << 12, (prev - start + 1) << 12)
            start = page
        prev = page
    for addr, block in blocks:
        uc.mem_write(addr, block.tobytes())


def _seg(dpl: int, code: bool) -> bytes:
    """A flat long-mode descriptor (SDM Vol. 3A 3.4.5): present, S=1, L=1 for code."""
    access = 0x80 | (dpl << 5) | 0x10 | (0x0A if code else 0x02)
    flags = 0x8F | (0x20 if code else 0x40)
    return struct.pack("<HHBBBB", 0xFFFF, 0, 0, access, flags, 0)


class UnicornWalker:
    """One unicorn x86_64 CPU per case; three accesses per VA."""

    name = "unicorn x86_64 CPL3"

    def missing(self) -> str | None:
        try:
            importlib.import_module("unicorn")
        except ImportError as exc:
            return f"unicorn is not installed ({exc}); {INSTALL_HINT}"
        return None

    def cannot_walk(self, machine: Machine) -> str | None:
        if machine.arch != "x86_64":
            return "the unicorn x86_64 walker drives x86_64 only (s390x: see unicorn s390x DAT)"
        return None

    def rule(self, built: Built, va: int, leaf_entry: int, level: int) -> str | None:
        if not leaf_entry & 1:
            return "CPU: P (bit 0) clear, every access faults (PROT_NONE as Linux intends)"
        return None

    def _cpu(self, built: Built) -> tuple[Any, int, int]:
        uc_mod = importlib.import_module("unicorn")
        x86 = importlib.import_module("unicorn.x86_const")
        m, pt = built.machine, built.pt
        ps = m.page_size
        limit = 1 << (m.fmt.va_bits - 1)
        code_va, gdt_va = limit - 4 * ps, limit - 2 * ps
        top = (m.ram_base + m.ram_size) >> m.fmt.page_shift
        code_pfn, gdt_pfn = top - 2, top - 1  # the last RAM pages: no table lives there here
        pt.map(code_va, code_pfn, "rx")
        pt.map(gdt_va, gdt_pfn, "r")
        try:
            uc = uc_mod.Uc(uc_mod.UC_ARCH_X86, uc_mod.UC_MODE_64)
            load_memory(uc, m, built.pas[: built.n_mapped].tolist())
        finally:
            pt.unmap(gdt_va)
            pt.unmap(code_va)
        gdt = bytes(8) + _seg(0, True) + _seg(0, False) + _seg(3, False) + _seg(3, True)
        uc.mem_write(gdt_pfn << 12, gdt)
        uc.mem_write(code_pfn << 12, _CODE)
        for pa in built.pas[: built.n_mapped].tolist():
            uc.mem_write(pa & ~7, struct.pack("<Q", pa & ~7))
        uc.msr_write(_EFER, (1 << 8) | (1 << 10) | (1 << 11))
        cr4 = uc.reg_read(x86.UC_X86_REG_CR4) | (1 << 5)
        if m.fmt.mode == "la57":
            cr4 |= 1 << 12
        uc.reg_write(x86.UC_X86_REG_CR4, cr4)
        uc.reg_write(x86.UC_X86_REG_CR3, pt.root)
        uc.reg_write(x86.UC_X86_REG_CR0, uc.reg_read(x86.UC_X86_REG_CR0) | (1 << 31) | (1 << 16) | 1)
        uc.reg_write(x86.UC_X86_REG_GDTR, (0, gdt_va, len(gdt) - 1, 0))
        uc.reg_write(x86.UC_X86_REG_SS, 0x1B)
        uc.reg_write(x86.UC_X86_REG_CS, 0x23)
        return uc, code_va, ps

    def translate(self, built: Built, vas: Sequence[int]) -> list[Answer]:
        uc_mod = importlib.import_module("unicorn")
        x86 = importlib.import_module("unicorn.x86_const")
        uc, code_va, _ps = self._cpu(built)
        state: dict[str, Any] = {"fault": None, "fetched": None}

        def on_intr(uc_: Any, intno: int, _data: Any) -> None:
            state["fault"] = (intno, uc_.reg_read(x86.UC_X86_REG_CR2))
            uc_.emu_stop()

        def on_code(uc_: Any, address: int, _size: int, _data: Any) -> None:
            if address == state["target"]:
                state["fetched"] = address
                uc_.emu_stop()

        uc.hook_add(uc_mod.UC_HOOK_INTR, on_intr)
        uc.hook_add(uc_mod.UC_HOOK_CODE, on_code)
        # a fault with no IDT escalates to a triple fault, after which the CPU runs nothing:
        # every access starts from the same saved CPU state
        saved = uc.context_save()

        def run(start: int, rbx: int, fetch: bool = False) -> tuple[Any, str]:
            state["fault"], state["fetched"], state["target"] = None, None, start if fetch else None
            uc.context_restore(saved)
            uc.reg_write(x86.UC_X86_REG_RBX, rbx)
            try:
                uc.emu_start(start, start + 3, count=1)
            except uc_mod.UcError as exc:
                return state["fault"], str(exc)
            return state["fault"], ""

        out: list[Answer] = []
        for j, va in enumerate(vas):
            mapped = j < built.n_mapped
            if code_va <= va < code_va + 4 * built.machine.page_size:
                out.append(Answer(pa=None, detail="skipped: the walker's own code/GDT page"))
                continue
            fault, err = run(code_va, va)
            if fault is not None or err:
                out.append(Answer(pa=None, detail=f"load faulted: {fault} {err}".strip()))
                continue
            got = uc.reg_read(x86.UC_X86_REG_RAX) | (va & 7)
            if not mapped:
                out.append(Answer(pa=got, detail="load succeeded"))
                continue
            rwx = built.prot[j].split("/")[0]
            shared = built.prot[j].endswith("/shared")
            want_w, want_x = shared and "w" in rwx, "x" in rwx
            problems: list[str] = []
            wfault, werr = run(code_va + 3, va)
            wrote = wfault is None and not werr
            if wrote != want_w:
                problems.append(
                    f"store {'allowed' if wrote else 'faulted'}, expected {'allowed' if want_w else 'a fault'}"
                )
            # fetch at the page start, so the (tag) instruction bytes never cross the page
            start = va & ~0xFFF
            run(start, 0, fetch=True)
            fetched = state["fetched"] == start
            if fetched != want_x:
                problems.append(
                    f"fetch {'allowed' if fetched else 'faulted'}, expected {'allowed' if want_x else 'a fault'}"
                )
            leaf = built.pt.lookup(va)
            if leaf is not None:
                ent = int.from_bytes(uc.mem_read(leaf.entry_pa, 8), "little")
                if not ent & _A:
                    problems.append(f"A not set after access (entry {ent:#018x})")
                if wrote and not ent & _D:
                    problems.append(f"D not set after the store (entry {ent:#018x})")
            out.append(Answer(pa=got, detail=f"W={int(wrote)} X={int(fetched)}", problem="; ".join(problems)))
        return out
