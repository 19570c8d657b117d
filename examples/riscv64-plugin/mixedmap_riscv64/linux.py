"""What Linux 6.18 puts on top of the RV64 format: software bits, pgprots, swap entries.

Every value is read off the kernel headers (verified against the v6.17/v6.18 sources):

* ``arch/riscv/include/asm/pgtable-bits.h``: ``_PAGE_PRESENT`` .. ``_PAGE_DIRTY`` are the
  hardware bits 0..7; ``_PAGE_SOFT`` is the RSW field ``3 << 8``; ``_PAGE_SPECIAL`` is
  ``1 << 8`` ("RSW: 0x1"); ``_PAGE_PROT_NONE`` is ``_PAGE_GLOBAL``; ``_PAGE_TABLE`` is
  ``_PAGE_PRESENT``; ``_PAGE_SWP_EXCLUSIVE`` is ``_PAGE_ACCESSED`` (swap entries only);
  ``_PAGE_PFN_SHIFT`` is 10. RSW bit 9 is free: ``_PAGE_DEVMAP`` left with the devmap
  removal (6.17), and the Svrsw60t59b soft-dirty/uffd-wp bits 59/60 only came in 6.19.
* ``arch/riscv/include/asm/pgtable-64.h``: ``_PAGE_PFN_MASK`` = ``GENMASK(53, 10)``;
  ``_PAGE_NAPOT`` bit 63; Svpbmt ``_PAGE_NOCACHE``/``_PAGE_IO``/``_PAGE_MTMASK`` in bits
  62:61 (chosen at boot by ``ALT_SVPBMT``); ``_PAGE_CHG_MASK`` = ``~(PRESENT | READ | WRITE
  | EXEC | USER | GLOBAL | MTMASK)``.
* ``arch/riscv/include/asm/pgtable.h``: ``_PAGE_BASE``, ``PAGE_*`` and ``PAGE_KERNEL*``;
  the swap layout (type in bits 11:7, offset from bit 12).
* ``arch/riscv/mm/init.c``: ``protection_map``. ``asm/pgalloc.h``: ``p?d_populate`` write
  ``(pfn << _PAGE_PFN_SHIFT) | _PAGE_TABLE``. ``asm/csr.h``/``mm/context.c``: satp.
* ``arch/riscv/include/asm/sparsemem.h``: ``SECTION_SIZE_BITS`` 27, ``MAX_PHYSMEM_BITS`` 56.

Configuration modelled: RV64 with ``CONFIG_RISCV_ISA_SVPBMT=y`` and ``CONFIG_RISCV_ISA_SVNAPOT=y``
on a hart that implements both extensions (not a T-Head part, so ``ALT_THEAD_PMA`` is a
no-op), ``CONFIG_TRANSPARENT_HUGEPAGE=y``.
"""

from __future__ import annotations

from typing import Final

from mixedmap import bits

from mixedmap_riscv64 import hw

PROFILE: Final = "6.18"

PRESENT: Final = hw.V
READ: Final = hw.R
WRITE: Final = hw.W
EXEC: Final = hw.X
USER: Final = hw.U
GLOBAL: Final = hw.G
ACCESSED: Final = hw.A
DIRTY: Final = hw.D
SOFT: Final = hw.RSW  # _PAGE_SOFT (3 << 8)
SPECIAL: Final = hw.RSW0  # _PAGE_SPECIAL (1 << 8)
PROT_NONE: Final = hw.G  # _PAGE_PROT_NONE: set on V=0 entries to tell PROT_NONE from swap
TABLE: Final = hw.V  # _PAGE_TABLE
SWP_EXCLUSIVE: Final = hw.A  # _PAGE_SWP_EXCLUSIVE (swap entries only)

PFN_SHIFT: Final = 10  # _PAGE_PFN_SHIFT
PFN_MASK: Final = hw.PPN_MASK  # _PAGE_PFN_MASK = GENMASK(53, 10)
NAPOT: Final = hw.N  # _PAGE_NAPOT
NOCACHE: Final = hw.PBMT_NC  # _PAGE_NOCACHE with Svpbmt
IO: Final = hw.PBMT_IO  # _PAGE_IO with Svpbmt
MTMASK: Final = hw.PBMT  # _PAGE_MTMASK with Svpbmt

#: _PAGE_CHG_MASK: the bits pte_modify() keeps from the old entry.
CHG_MASK: Final = bits.ALL64 ^ (PRESENT | READ | WRITE | EXEC | USER | GLOBAL | MTMASK)

# -- swap entries (pgtable.h: __SWP_TYPE_SHIFT 7, __SWP_TYPE_BITS 5) -----------------------
SWP_TYPE_SHIFT: Final = 7
SWP_TYPE_BITS: Final = 5
SWP_TYPE_MASK: Final = (1 << SWP_TYPE_BITS) - 1
SWP_OFFSET_SHIFT: Final = SWP_TYPE_SHIFT + SWP_TYPE_BITS  # 12

# -- pgprots (pgtable.h) ---------------------------------------------------------------------
_BASE = PRESENT | ACCESSED | USER  # _PAGE_BASE
_KERNEL = READ | WRITE | PRESENT | ACCESSED | DIRTY | GLOBAL  # _PAGE_KERNEL

PAGE_NONE: Final = PROT_NONE | READ
PAGE_READ: Final = _BASE | READ
PAGE_WRITE: Final = _BASE | READ | WRITE
PAGE_EXEC: Final = _BASE | EXEC
PAGE_READ_EXEC: Final = _BASE | READ | EXEC
PAGE_WRITE_EXEC: Final = _BASE | READ | EXEC | WRITE

#: Named pgprots as (name, value): the user ones, their aliases, the kernel ones.
PROTECTIONS: Final[tuple[tuple[str, int], ...]] = (
    ("PAGE_NONE", PAGE_NONE),
    ("PAGE_READ", PAGE_READ),
    ("PAGE_WRITE", PAGE_WRITE),
    ("PAGE_EXEC", PAGE_EXEC),
    ("PAGE_READ_EXEC", PAGE_READ_EXEC),
    ("PAGE_WRITE_EXEC", PAGE_WRITE_EXEC),
    ("PAGE_COPY", PAGE_READ),
    ("PAGE_COPY_EXEC", PAGE_READ_EXEC),
    ("PAGE_SHARED", PAGE_WRITE),
    ("PAGE_SHARED_EXEC", PAGE_WRITE_EXEC),
    ("PAGE_KERNEL", _KERNEL),
    ("PAGE_KERNEL_READ", _KERNEL ^ WRITE),
    ("PAGE_KERNEL_EXEC", _KERNEL | EXEC),
    ("PAGE_KERNEL_READ_EXEC", (_KERNEL ^ WRITE) | EXEC),
    ("PAGE_KERNEL_IO", bits.clear(_KERNEL, MTMASK) | IO),  # _PAGE_IOREMAP
    ("PAGE_TABLE", TABLE),
)

#: arch/riscv/mm/init.c protection_map[], index VM_READ=1 | VM_WRITE=2 | VM_EXEC=4 |
#: VM_SHARED=8. Write-only maps to a readable prot (W without R is reserved).
PROTECTION_MAP_NAMES: Final[tuple[str, ...]] = (
    "PAGE_NONE", "PAGE_READ", "PAGE_COPY", "PAGE_COPY",
    "PAGE_EXEC", "PAGE_READ_EXEC", "PAGE_COPY_EXEC", "PAGE_COPY_EXEC",
    "PAGE_NONE", "PAGE_READ", "PAGE_SHARED", "PAGE_SHARED",
    "PAGE_EXEC", "PAGE_READ_EXEC", "PAGE_SHARED_EXEC", "PAGE_SHARED_EXEC",
)  # fmt: skip

PROTECTION_MAP: Final[tuple[int, ...]] = tuple(dict(PROTECTIONS)[n] for n in PROTECTION_MAP_NAMES)

# -- memory model (asm/sparsemem.h, 64-bit) --------------------------------------------------
SECTION_SIZE_BITS: Final = 27
MAX_PHYSMEM_BITS: Final = 56

SOURCE: Final = (
    "linux-6.18 arch/riscv/include/asm/pgtable-bits.h, pgtable-64.h, pgtable.h (helpers, swap "
    "entries, PAGE_*), pgalloc.h (p?d_populate), csr.h (satp), sparsemem.h; arch/riscv/mm/init.c "
    "(protection_map)"
)
