"""unicorn's emulated s390x CPU (QEMU's TCG DAT) translating through mixedmap's tables.

unicorn 2.1 exposes CR0-CR15 and the PSW mask as registers (``unicorn.s390x_const``
``UC_S390X_REG_CR1``, ``UC_S390X_REG_PSWM``; tried: DAT then uses the ASCE written to CR1),
so no LCTLG is needed. Per case the tables are copied into unicorn's
memory and the CPU is set up as the kernel sets up a user address space:

* the prefix area (lowcore) is moved with SPX, run with DAT off, to two RAM pages that
  hold nothing of the model's: a program interrupt stores the translation-exception
  identification into the lowcore (``trigger_access_exception``), and what sits at PA 0
  (the kernel's own lowcore, reserved at boot, or whatever a machine put there) must not
  change under the walk;
* CR1, the primary ASCE, is the mm's ASCE as the s390 plugin builds it (origin | user
  bits | TL=3 | designation type of the top table);
* the PSW has DAT on, primary-space mode, 64-bit addressing, supervisor state and key 0
  (LRAG is privileged; DAT protection does not depend on the problem-state bit, PoP
  "Protection").

For each VA the CPU then runs, through QEMU's ``mmu_translate``/``mmu_translate_asce``
(target/s390x/mmu_helper.c):

* ``LRAG r2,0(r3)`` (LOAD REAL ADDRESS): cc 0 and the real address, or cc 3 and the
  program-interruption code of the translation exception (``HELPER(lra)``,
  target/s390x/mem_helper.c); this is the PA compared;
* ``LG r4,0(r3)``: the tag this walker wrote at the expected PA must come back;
* ``STG r4,0(r3)``: allowed or a protection exception (``PGM_PROTECTION``, TEID bit 61,
  caught with ``UC_HOOK_INTR``), checked against the prot asked for by the kernel's own
  rules: readable unless PROT_NONE; on 2.6.2x writable only when shared and writable
  (``PAGE_SHARED`` = ``_PAGE_TYPE_RW``, dirtiness lives in the storage key); on 6.18 never
  on a freshly mapped page, since ``PAGE_SHARED`` carries ``_PAGE_PROTECT`` until
  ``pte_mkdirty`` (software dirty bit; arch/s390/include/asm/pgtable.h).

Rules of the hardware's own, counted apart: a PROT_NONE PTE has the page-invalid bit set,
so DAT raises a page-translation exception.

unicorn has no EDAT-1. STFLE in unicorn 2.1.4 stores an all-zero facility list for every
CPU model (default, qemu, max, gen15b, z14, z13, z10EC were tried), so
``s390_has_feat(S390_FEAT_EDAT)`` is false and ``mmu_translate_asce`` reads an FC=1 segment
entry as a page-table origin even with CR0.EDAT set (tried: the 1 MiB frame's first bytes
are taken for PTEs). The walker runs STFLE on each case's CPU: without facility 8, 1 MiB
leaves are not run and are reported as "not walkable by unicorn: no EDAT-1", counted
apart, never as agreements; a unicorn that reports it gets CR0.EDAT and its 1 MiB leaves
walked. Nor is there IEP (facility 130), so instruction-execution protection is not
checked; and an s390 PTE has no accessed/dirty bits for the CPU to set (the storage key
holds R/C).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Sequence
from typing import Any

from mixedmap.errors import MixedmapError
from mixedmap.machine import Machine
from mixedmap.verify.base import Answer, Built
from mixedmap.verify.unicorn_walker import load_memory

INSTALL_HINT = "pip install 'mixedmap[verify]' (or: pip install unicorn)"
#: LRAG r2,0(r3); LG r4,0(r3); STG r4,0(r3) (RXY-a, opcodes E3..03/04/24)
_CODE = bytes.fromhex("E32030000003E34030000004E34030000024")
_STORE_AT, _END = 12, 18  # offsets of STG and of the end
#: SPX 0(r5); STFLE 0(r6) (S format B210, B2B0), at this offset of the code page, DAT off.
_SETUP = bytes.fromhex("B2105000B2B06000")
_SETUP_AT, _PREFIX_WORD_AT, _FACILITIES_AT = 0x100, 0x200, 0x300
#: Facility bits (STFLE, PoP "Facility Indications"): 8 = EDAT-1.
_FAC_EDAT1 = 8
_CR0_EDAT = 1 << 23  # CR0 bit 40 (QEMU CR0_EDAT)
#: PSW mask bits (PoP "Program-Status Word"; QEMU PSW_MASK_DAT/_64/_32): DAT, EA, BA.
_PSW_64 = 0x0000_0001_8000_0000
_PSW_DAT = 0x0400_0000_0000_0000
#: Lowcore offset of the translation-exception identification (QEMU LowCore.trans_exc_code).
_TEID = 0xA8
_TEID_PROT = 0x4  # bit 61: DAT protection ("DAT sets bit 61 only", mmu_translate)
_PAGE_INVALID = 0x400
_SEGMENT_INVALID = 0x20
_NO_EDAT = (
    "not walkable by unicorn: no EDAT-1 (STFLE reports no facility 8, so an FC=1 segment "
    "entry is read as a page-table origin; mmu_helper.c mmu_translate_asce)"
)
#: Program-interruption codes (PoP "Program-Interruption Conditions"; QEMU PGM_*).
_PGM = {
    0x04: "protection", 0x05: "addressing", 0x10: "segment-translation", 0x11: "page-translation",
    0x12: "translation-specification", 0x38: "ASCE-type", 0x39: "region-first-translation",
    0x3A: "region-second-translation", 0x3B: "region-third-translation",
}  # fmt: skip


def _writable_on_map(machine: Machine, prot_name: str) -> bool:
    """May the CPU store to a page just mapped with this prot (see the module docstring)?"""
    rwx = prot_name.split("/")[0]
    if machine.profile.name.startswith("2.6"):
        return prot_name.endswith("/shared") and "w" in rwx
    return False


class UnicornS390xWalker:
    """One unicorn s390x CPU per case; LRAG, a load and a store per VA."""

    name = "unicorn s390x DAT"

    def __init__(self) -> None:
        #: Whether the last CPU set up reported EDAT-1 (STFLE facility 8); if it ever does,
        #: CR0.EDAT is switched on and 1 MiB leaves are walked like the rest.
        self.edat1 = False

    def missing(self) -> str | None:
        try:
            importlib.import_module("unicorn")
            importlib.import_module("unicorn.s390x_const")
        except ImportError as exc:
            return f"unicorn is not installed ({exc}); {INSTALL_HINT}"
        return None

    def cannot_walk(self, machine: Machine) -> str | None:
        if machine.arch != "s390x":
            return "the unicorn s390x walker drives s390x DAT only"
        return None

    def rule(self, built: Built, va: int, leaf_entry: int, level: int) -> str | None:
        last = len(built.machine.fmt.levels) - 1
        if level < last:
            if not self.edat1:
                return _NO_EDAT
            if leaf_entry & _SEGMENT_INVALID:
                return "DAT: segment-invalid bit (0x20) set, segment-translation exception"
            return None
        if leaf_entry & _PAGE_INVALID:
            return (
                "DAT: page-invalid bit (0x400) set, page-translation exception (PROT_NONE as Linux intends)"
            )
        return None

    def _cpu(self, built: Built) -> tuple[Any, int, int, set[int]]:
        """A CPU with the case's memory, prefix moved, CR1 and the PSW set.

        Returns (uc, code VA, prefix, the absolute pages where no tag could be written)."""
        uc_mod = importlib.import_module("unicorn")
        s390 = importlib.import_module("unicorn.s390x_const")
        m, pt = built.machine, built.pt
        ps = m.page_size
        code_va = (1 << (m.fmt.va_bits - 1)) - 4 * ps
        top = (m.ram_base + m.ram_size) >> m.fmt.page_shift
        # the last RAM pages (no table lives there here): code, and an 8 KiB prefix area
        code_pa, prefix = (top - 1) << 12, (top - 4) << 12
        used = {a for a, b in m.mem.blocks() if b.any()}
        if used & {code_pa, prefix, prefix + 4096}:
            raise MixedmapError(f"{built.label}: the walker's own pages {code_pa:#x}/{prefix:#x} hold data")
        pt.map(code_va, code_pa >> 12, "rx")
        try:
            uc = uc_mod.Uc(uc_mod.UC_ARCH_S390X, uc_mod.UC_MODE_BIG_ENDIAN)
            load_memory(uc, m, built.pas[: built.n_mapped].tolist())
        finally:
            pt.unmap(code_va)
        uc.mem_write(code_pa, _CODE)
        uc.mem_write(code_pa + _SETUP_AT, _SETUP)
        uc.mem_write(code_pa + _PREFIX_WORD_AT, struct.pack(">I", prefix))
        untagged = used | {code_pa, prefix, prefix + 4096}
        for pa in built.pas[: built.n_mapped].tolist():
            at = _absolute(pa & ~7, prefix)
            if at & ~0xFFF not in untagged:
                uc.mem_write(at, struct.pack(">Q", pa & ~7))
        # SET PREFIX and STORE FACILITY LIST EXTENDED with DAT off
        uc.reg_write(s390.UC_S390X_REG_PSWM, _PSW_64)
        uc.reg_write(s390.UC_S390X_REG_R5, code_pa + _PREFIX_WORD_AT)
        uc.reg_write(s390.UC_S390X_REG_R6, code_pa + _FACILITIES_AT)
        uc.reg_write(s390.UC_S390X_REG_R0, 3)  # 4 doublewords
        uc.emu_start(code_pa + _SETUP_AT, code_pa + _SETUP_AT + len(_SETUP))
        facilities = int.from_bytes(uc.mem_read(code_pa + _FACILITIES_AT, 32), "big")
        self.edat1 = bool(facilities >> (255 - _FAC_EDAT1) & 1)
        # EDAT-1 if the CPU has it; no IEP, no low-address protection
        uc.reg_write(s390.UC_S390X_REG_CR0, _CR0_EDAT if self.edat1 else 0)
        uc.reg_write(s390.UC_S390X_REG_CR1, pt.root)
        uc.reg_write(s390.UC_S390X_REG_PSWM, _PSW_64 | _PSW_DAT)
        return uc, code_va, prefix, untagged

    def translate(self, built: Built, vas: Sequence[int]) -> list[Answer]:
        uc_mod = importlib.import_module("unicorn")
        s390 = importlib.import_module("unicorn.s390x_const")
        uc, code_va, prefix, untagged = self._cpu(built)
        m = built.machine
        mapped_idx = {int(v): j for j, v in enumerate(built.vas[: built.n_mapped].tolist())}
        state: dict[str, Any] = {"fault": None}

        def on_intr(uc_: Any, intno: int, _data: Any) -> None:
            # fires before the interrupt is taken: PC is the failing instruction
            teid = int.from_bytes(uc_.mem_read(prefix + _TEID, 8), "big")
            state["fault"] = (uc_.reg_read(s390.UC_S390X_REG_PC) - code_va, intno, teid)
            uc_.emu_stop()

        uc.hook_add(uc_mod.UC_HOOK_INTR, on_intr)
        saved = uc.context_save()
        ps = m.page_size
        out: list[Answer] = []
        for va in vas:
            j = mapped_idx.get(va)
            if code_va <= va < code_va + 4 * ps:
                out.append(Answer(pa=None, detail="skipped: the walker's own code page"))
                continue
            if j is not None and int(built.size[j]) > ps and not self.edat1:
                out.append(Answer(pa=None, detail=_NO_EDAT))
                continue
            state["fault"] = None
            uc.context_restore(saved)
            uc.reg_write(s390.UC_S390X_REG_R3, va)
            err = ""
            try:
                uc.emu_start(code_va, code_va + _END)
            except uc_mod.UcError as exc:
                err = str(exc)
            cc = (uc.reg_read(s390.UC_S390X_REG_PSWM) >> 44) & 3
            r2 = uc.reg_read(s390.UC_S390X_REG_R2)
            fault = state["fault"]
            if cc != 0:
                code = r2 & 0xFFFF
                out.append(Answer(pa=None, detail=f"LRAG cc {cc}: {_PGM.get(code, hex(code))} exception"))
                continue
            pa = _real(r2, prefix)
            if j is None:
                out.append(Answer(pa=pa, detail="LRAG cc 0 on an unmapped VA"))
                continue
            problems: list[str] = []
            loaded = fault is None or fault[0] >= _STORE_AT
            if not loaded or err:
                problems.append(f"load faulted (fault {fault}, {err or 'no error'}), expected it allowed")
            else:
                got = uc.reg_read(s390.UC_S390X_REG_R4)
                tag = int(built.pas[j]) & ~7
                if got != tag and _absolute(tag, prefix) & ~0xFFF not in untagged:
                    problems.append(f"load read {got:#x}, not the tag of PA {tag:#x}")
            stored = loaded and fault is None and not err
            if loaded and fault is not None and not fault[2] & _TEID_PROT:
                problems.append(f"store raised a non-protection exception (TEID {fault[2]:#x})")
            want_w = _writable_on_map(m, built.prot[j])
            if loaded and stored != want_w:
                problems.append(
                    f"store {'allowed' if stored else 'raised a protection exception'}, "
                    f"expected {'it allowed' if want_w else 'a protection exception'}"
                )
            out.append(Answer(pa=pa, detail=f"LRAG cc 0, W={int(stored)}", problem="; ".join(problems)))
        return out


def _absolute(real: int, prefix: int) -> int:
    """Real to absolute address under prefixing (PoP "Prefixing"; QEMU ``mmu_real2abs``)."""
    if real < 0x2000:
        return real + prefix
    if prefix <= real < prefix + 0x2000:
        return real - prefix
    return real


def _real(absolute: int, prefix: int) -> int:
    """QEMU's LRA returns the absolute address (``mmu_translate`` applies ``mmu_real2abs``);
    the PoP's LRA yields the real one. Prefixing swaps two 8 KiB blocks, so it is its own
    inverse."""
    return _absolute(absolute, prefix)
