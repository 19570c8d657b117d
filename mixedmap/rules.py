"""The mm rules that differ between kernels, each named with the release that introduced it.

A :class:`Profile` says *which* kernel a Machine follows; this table says *what* that means
rule by rule. Code asks ``rule.applies(profile)`` instead of comparing versions, so every
version-dependent branch names its rule, and ``mixedmap diff`` can say which rule (kernel
function, file, release) makes two kernels answer differently. An operation that exists
only while a rule holds calls :func:`require` first, so asking the wrong kernel for it is
an :class:`UnsupportedRule` that names the profile and the release, before anything changes.

Releases come from the kernel's own history; where the reference marks one as unverified
the rule's ``note`` says so.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import attrs

from mixedmap.errors import UnsupportedOperation
from mixedmap.profiles import Profile

Version = tuple[int, ...]


def _fmt(v: Version) -> str:
    return ".".join(map(str, v))


@attrs.frozen
class Rule:
    """One kernel behaviour: in force from ``introduced`` up to (not including) ``removed``."""

    name: str
    #: The kernel function(s) that carry the rule, and where they live.
    function: str
    file: str
    introduced: Version
    summary: str
    removed: Version | None = None
    #: Provenance where the release is not certain, or a pointer to the commit.
    note: str = ""

    def applies(self, profile: Profile) -> bool:
        """Whether ``profile``'s kernel has this rule (recorded while :func:`consulted` runs)."""
        seen = _consulted.get()
        if seen is not None:
            seen.append(self)
        if profile.version < self.introduced:
            return False
        return self.removed is None or profile.version < self.removed

    @property
    def since(self) -> str:
        """``"3.7"``, or ``"2.6.26-3.19"`` for a rule that was removed again."""
        if self.removed is None:
            return _fmt(self.introduced)
        return f"{_fmt(self.introduced)}, removed in {_fmt(self.removed)}"

    def cite(self) -> str:
        """``function (file, since X)``: how a report or an error names the rule."""
        return f"{self.function} ({self.file}, since {self.since})"


class UnsupportedRule(UnsupportedOperation):
    """An operation asked of a kernel profile that does not have it (yet, or any more)."""

    def __init__(self, what: str, rule: Rule, profile: Profile) -> None:
        if profile.version < rule.introduced:
            why = f"it was introduced in {_fmt(rule.introduced)}"
        else:
            assert rule.removed is not None
            why = f"it was removed in {_fmt(rule.removed)}"
            if rule.name in _REPLACED_BY:
                why += f"; {_REPLACED_BY[rule.name]}"
        super().__init__(f"{what} does not exist in kernel {profile}: {why} ({rule.file})")
        self.rule = rule
        self.profile = profile


_consulted: contextvars.ContextVar[list[Rule] | None] = contextvars.ContextVar(
    "mixedmap_rules_consulted", default=None
)


@contextlib.contextmanager
def consulted() -> Iterator[list[Rule]]:
    """Collect every rule asked while the block runs, in order (repeats included).

    ``mixedmap diff`` runs each scenario step inside one, so a difference between kernels is
    attributed to the rules that step actually consulted, not to a guess from the step's op.
    """
    seen: list[Rule] = []
    token = _consulted.set(seen)
    try:
        yield seen
    finally:
        _consulted.reset(token)


def require(rule: Rule, profile: Profile, what: str | None = None) -> None:
    """Raise :class:`UnsupportedRule` unless ``profile`` has ``rule``."""
    if not rule.applies(profile):
        raise UnsupportedRule(what or rule.function, rule, profile)


# -- the table ------------------------------------------------------------------------------------
FILEMAP_XIP = Rule(
    "filemap_xip",
    "get_xip_mem / xip_file_fault",
    "mm/filemap_xip.c",
    (2, 6, 26),
    "XIP files are VM_MIXEDMAP and fault through ->get_xip_mem and vm_insert_mixed",
    removed=(4, 0),
    note="2.6.26 replaced ->get_xip_page with ->get_xip_mem; 4.0 removed filemap_xip for DAX",
)
XIP_SPARSE_VM_INSERT_PAGE = Rule(
    "xip_sparse_vm_insert_page",
    "xip_file_fault",
    "mm/filemap_xip.c",
    (2, 6, 27),
    "the sparse (hole) page is mapped with vm_insert_page and the fault returns NOPAGE",
    removed=(4, 0),
    note="commit 538f8ea6 (Aug 2008)",
)
BAD_PAGE_MAP_REPORT = Rule(
    "bad_page_map_report",
    "vm_normal_page / print_bad_pte (print_bad_page_map from 6.18)",
    "mm/memory.c",
    (2, 6, 29),
    "a PTE vm_normal_page cannot account for (special outside PFNMAP/MIXEDMAP, or a pfn above "
    "highest_memmap_pfn) is reported ('BUG: Bad page map') and treated as special",
    note="commit 22b31eec63e5 'badpage: vm_normal_page use print_bad_pte' (H. Dickins, 6 Jan 2009, "
    "2.6.29) replaced the VM_BUG_ONs and added highest_memmap_pfn (kept by memmap_init_zone at boot "
    "and hotplug)",
)
ZERO_PAGE = Rule(
    "zero_page",
    "do_anonymous_page / wp_page_copy",
    "mm/memory.c",
    (2, 6, 32),
    "an anonymous read fault maps the shared zero pfn, with the special bit where the arch has it; "
    "a write to it COWs into a fresh zeroed page without a copy",
    note="commit a13ea5b75964 'mm: reinstate ZERO_PAGE' (H. Dickins, posted Sep 2009 after 2.6.31); "
    "557ed1fa2620 'remove ZERO_PAGE' (2.6.24) gave 2.6.24-2.6.31 a fresh zeroed page",
)
FILE_FAULT_SIGBUS = Rule(
    "file_fault_sigbus",
    "do_pte_missing / do_fault",
    "mm/memory.c",
    (4, 2),
    "a fault on a none PTE of a VMA that is not anonymous and has no ->fault (a driver that fills "
    "its mapping at mmap time) is SIGBUS; before, handle_pte_fault fell through to "
    "do_anonymous_page and put an anonymous page into the file mapping",
    note="commit 6b7339f4c31a 'mm: avoid setting up anonymous pages into file mapping' "
    "(K. Shutemov, 4.2); since 5.0 (bfd40eaff5ab 'mm: fix vma_is_anonymous() false-positives') a "
    "file VMA whose ->mmap left vm_ops NULL has dummy_vm_ops, so it is not anonymous either",
)
FORK_COPIES_PINNED = Rule(
    "fork_copies_pinned",
    "copy_present_page / folio_needs_cow_for_dma",
    "mm/memory.c, include/linux/mm.h",
    (5, 9),
    "fork gives the child its own copy of an anonymous page that may be DMA-pinned in a COW VMA "
    "at once, and leaves the parent's PTE writable, so a later COW cannot leave the pinner looking "
    "at the child's page",
    note="70e806e4e645 'mm: Do early cow for pinned pages during fork() for ptes' (P. Xu, 5.9); "
    "page_needs_cow_for_dma from 5.12, folio_needs_cow_for_dma in 6.x; MMF_HAS_PINNED is the pin "
    "ledger in the model",
)
FORK_COPIES_MIXEDMAP = Rule(
    "fork_copies_mixedmap",
    "copy_page_range / vma_needs_copy",
    "mm/memory.c",
    (3, 7),
    "fork copies the page tables of every PFNMAP or MIXEDMAP VMA (VM_INSERTPAGE folded into MIXEDMAP)",
    note="commit 4b6e1e37026e 'mm: kill vma flag VM_INSERTPAGE' (K. Khlebnikov, v3 of 31 Jul 2012, "
    "merged for 3.7): copy_page_range tests HUGETLB|NONLINEAR|PFNMAP|MIXEDMAP; 6.18 vma_needs_copy "
    "tests uffd-wp in the child, PFNMAP|MIXEDMAP, then anon_vma",
)
VM_INSERT_PAGE_SETS_MIXEDMAP = Rule(
    "vm_insert_page_sets_mixedmap",
    "vm_insert_page",
    "mm/memory.c",
    (3, 7),
    "vm_insert_page sets VM_MIXEDMAP instead of VM_INSERTPAGE, and BUGs on a VM_PFNMAP VMA",
    note="commit 4b6e1e37026e (3.7): 'if (!(vm_flags & VM_MIXEDMAP)) { BUG_ON(down_read_trylock"
    "(mmap_sem)); BUG_ON(vm_flags & VM_PFNMAP); vm_flags |= VM_MIXEDMAP; }', unchanged in 6.18",
)
REMAP_DONTEXPAND_DONTDUMP = Rule(
    "remap_dontexpand_dontdump",
    "remap_pfn_range",
    "mm/memory.c",
    (3, 7),
    "remap_pfn_range sets VM_IO|VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP (VM_RESERVED is gone)",
    note="'mm: prepare VM_DONTDUMP for using in drivers' and 'mm: kill vma flag VM_RESERVED and "
    "mm->reserved_vm counter', the same 3.7 series as 4b6e1e37026e; 6.18 remap_pfn_range_internal "
    "does vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP)",
)
VMF_INSERT = Rule(
    "vmf_insert",
    "vmf_insert_pfn / vmf_insert_mixed",
    "mm/memory.c",
    (4, 17),
    "the insert family returns VM_FAULT_* codes; an already populated PTE is NOPAGE, not -EBUSY",
    note="4.17 include/linux/mm.h added them as wrappers of vm_insert_pfn/vm_insert_mixed mapping "
    "-ENOMEM to OOM, other errors but -EBUSY to SIGBUS, else NOPAGE (commit 1c8f422059ae; out-of-tree "
    "backports gate them on KERNEL_VERSION(4, 17, 0))",
)
DAX = Rule(
    "dax",
    "dax_iomap_fault",
    "fs/dax.c",
    (4, 0),
    "files on persistent memory are mapped by DAX, which replaced filemap_xip",
)
PIN_USER_PAGES = Rule(
    "pin_user_pages",
    "pin_user_pages / unpin_user_pages",
    "mm/gup.c",
    (5, 6),
    "FOLL_PIN: pages for DMA are pinned with pin_user_pages* and released with unpin_user_page*",
    note="eddb1c228f79 'mm/gup: introduce pin_user_pages*() and FOLL_PIN' (5.6); a pin was still one "
    "plain reference until GUP_PIN_COUNTING_BIAS (5.7)",
)
GUP_EEXIST = Rule(
    "gup_eexist",
    "follow_page_pte / follow_pfn_pte",
    "mm/gup.c",
    (4, 3),
    "a PTE without a struct page is -EEXIST to follow_page: a GUP without pages (populate) carries on",
    note="1027e4436b6a 'mm: make GUP handle pfn mapping unless FOLL_GET is requested' (Sep 2015, 4.3); "
    "with FOLL_GET (and FOLL_PIN) it stayed -EFAULT until GUP_PAGES_EEXIST (5.18)",
)
FIND_NORMAL_PAGE = Rule(
    "find_normal_page",
    "__vm_normal_page / vm_ops->find_normal_page",
    "mm/memory.c",
    (6, 18),
    "a special PTE's VMA may name the page behind it (find_special_page until the rename)",
    note="the hook came with 667a0a06c99d 'mm: provide a find_special_page vma operation' (D. Vrabel, "
    "for Xen gntdev; 3.19/4.0, release not verified); renamed and put behind CONFIG_FIND_NORMAL_PAGE "
    "by 'mm: rename vm_ops->find_special_page() to vm_ops->find_normal_page()' (v3 11/11, 11 Aug "
    "2025), the series that made __vm_normal_page (6.18)",
)
VM_INSERT_PFN_ERRNO = Rule(
    "vm_insert_pfn_errno",
    "vm_insert_pfn / vm_insert_mixed",
    "mm/memory.c",
    (2, 6, 26),
    "the errno-returning inserts (-EBUSY on a populated PTE; vm_insert_mixed BUGs without MIXEDMAP)",
    removed=(4, 20),
    note="vm_insert_mixed arrived with VM_MIXEDMAP in 2.6.26 (vm_insert_pfn is older); both are in "
    "4.18 and gone by 5.0 (DepSurf), removed in 4.20 when drivers moved to vmf_insert_pfn",
)
VMF_INSERT_MIXED_MKWRITE = Rule(
    "vmf_insert_mixed_mkwrite",
    "vmf_insert_mixed_mkwrite / insert_pfn(mkwrite)",
    "mm/memory.c",
    (4, 18),
    "a mkwrite insert over the same pfn makes the PTE young, dirty and (VMA permitting) writable",
    note="vm_insert_mixed_mkwrite (R. Zwisler, 4.15) became vmf_insert_mixed_mkwrite in the "
    "vm_fault_t conversion (S. Joarder, Apr 2018); DepSurf: absent in 4.15, present in 4.18",
)
VMF_INSERT_PFN_PROT = Rule(
    "vmf_insert_pfn_prot",
    "vmf_insert_pfn_prot",
    "mm/memory.c",
    (4, 20),
    "vmf_insert_pfn with a caller's pgprot (vm_insert_pfn_prot of 4.5 returned an errno)",
    note="commit f5e6d1d5f8f3 'mm: introduce vmf_insert_pfn_prot()' (v4.19-6927, so 4.20)",
)
VM_MIXED_OK = Rule(
    "vm_mixed_ok",
    "vm_mixed_ok / __vm_insert_mixed",
    "mm/memory.c",
    (4, 19),
    "vmf_insert_mixed answers VM_FAULT_SIGBUS for a VMA without VM_MIXEDMAP (the zero pfn aside) "
    "where vm_insert_mixed BUG_ONs",
    note="the reference's timeline (C-DAXNOMIX e1fb4a086495, C-PFNTSPEC), not re-read; the 6.18 text "
    "(pfn_t gone) accepts MIXEDMAP or the zero pfn only",
)
MIXED_ZEROPAGE = Rule(
    "mixed_zeropage",
    "vm_mixed_zeropage_allowed / validate_page_before_insert",
    "mm/memory.c",
    (6, 11),
    "vm_insert_page and vmf_insert_mixed map the shared zero page special and uncounted, and only "
    "in COW or never-writable VMAs (else -EINVAL / SIGBUS; never with mkwrite)",
    note="'mm/memory: cleanly support zeropage in vm_insert_page*(), vm_map_pages*() and "
    "vmf_insert_mixed()' (D. Hildenbrand, posted 30 Apr 2024, 6.11 merge window; release from the "
    "mm tree's timing, not a tag)",
)
VM_INSERT_PAGES = Rule(
    "vm_insert_pages",
    "vm_insert_pages / insert_pages",
    "mm/memory.c",
    (5, 8),
    "batched vm_insert_page: maps a prefix, returns the error and the count not inserted",
    note="commit 8cd3984d81d5 (A. Roy, 2020); DepSurf: absent in 5.4, present in 5.8 (5.5-5.7 not sampled)",
)
ZAP_VMA_PTES_VOID = Rule(
    "zap_vma_ptes_void",
    "zap_vma_ptes",
    "mm/memory.c",
    (4, 18),
    "zap_vma_ptes returns nothing and silently does nothing outside a VM_PFNMAP VMA",
    note="DepSurf: int in 4.15, void in 4.18 (4.16/4.17 not sampled); 6.18 text: "
    "'if (!range_in_vma(...) || !(vm_flags & VM_PFNMAP)) return;'",
)
REMAP_ZAP_ON_ERROR = Rule(
    "remap_zap_on_error",
    "remap_pfn_range_notrack",
    "mm/memory.c",
    (6, 11),
    "a failing remap_pfn_range zaps [addr, addr + size) before returning (the COW whole-VMA "
    "-EINVAL included)",
    note="commit 79a61cc3fc04 'mm: avoid leaving partial pfn mappings around in error case' "
    "(L. Torvalds, 11 Sep 2024, just before 6.11; backported to stable)",
)
FORK_WRPROTECT_WRITABLE = Rule(
    "fork_wrprotect_writable",
    "__copy_present_ptes",
    "mm/memory.c",
    (4, 19),
    "fork write-protects a COW PTE only if it is writable (2.6.27 write-protected every one)",
    note="commit 1b2de5d039c8 'mm/cow: don't bother write protecting already write-protected pages' "
    "(L. Torvalds, Aug 2018; called recent in Sep 2018 threads, so 4.19)",
)
SMAPS_RSS_NORMAL_ONLY = Rule(
    "smaps_rss_normal_only",
    "smaps_pte_entry / smaps_account",
    "fs/proc/task_mmu.c",
    (2, 6, 33),
    "smaps Rss counts only PTEs vm_normal_page returns a page for (no special PTE, no zero page)",
    note="M. Kim 'Fix wrong rss count of smaps' moved mss->resident after vm_normal_page (posted "
    "28 Dec 2009 against mmotm; merge release 2.6.33 or 2.6.34, not verified); 6.x adds resident "
    "in smaps_account, which smaps_pte_entry reaches only with a page",
)

GUP_PIN_COUNTING_BIAS = Rule(
    "gup_pin_counting_bias",
    "try_grab_folio / gup_put_folio / folio_maybe_dma_pinned",
    "mm/gup.c, include/linux/mm.h",
    (5, 7),
    "a pin adds GUP_PIN_COUNTING_BIAS (1024) to a small folio's refcount; refcount >= 1024 reads as pinned",
    note="3faa52c03f44 'mm/gup: track FOLL_PIN pages' (split out of the 5.6 series); a large folio "
    "counts pins in _pincount instead (not modelled: the model has no large folios)",
)
GUP_PAGES_EEXIST = Rule(
    "gup_pages_eexist",
    "__get_user_pages / follow_pfn_pte",
    "mm/gup.c",
    (5, 18),
    "a GUP that fills a pages array stops at a PTE without a struct page with -EEXIST, not -EFAULT",
    note="65462462ffb2 'mm/gup: follow_pfn_pte(): -EEXIST cleanup' (J. Hubbard, v5 Feb 2022, merged "
    "after 5.17)",
)
GUP_ZERO_PAGE_UNPINNED = Rule(
    "gup_zero_page_unpinned",
    "try_grab_folio / gup_put_folio (is_zero_folio)",
    "mm/gup.c",
    (6, 5),
    "pin_user_pages of the shared zero page takes no pin (no refcount change), unpin ignores it",
    note="c8070b787519 'mm: Don't pin ZERO_PAGE in pin_user_pages()' (6.5-rc1)",
)
FOLL_LONGTERM = Rule(
    "foll_longterm",
    "check_vma_flags / is_valid_gup_args",
    "mm/gup.c",
    (5, 2),
    "FOLL_LONGTERM pins (pin_user_pages only) are refused on fs-dax VMAs with -EOPNOTSUPP",
    note="932f4a630a69 replaced get_user_pages_longterm (4.15) with the flag; the fs-dax test moved "
    "into check_vma_flags with 52650c8b466b (5.11); 'LONGTERM only when pinning' is is_valid_gup_args",
)
GUP_LONGTERM_FILE_WRITE = Rule(
    "gup_longterm_file_write",
    "writable_file_mapping_allowed / gup_fast_folio_allowed",
    "mm/gup.c",
    (6, 5),
    "a long-term writable pin of a file mapping that needs dirty tracking is -EFAULT; GUP-fast "
    "leaves every file-backed folio of such a pin to the slow path",
    note="8ac268436e6d and a6e79df92e4a (L. Stoakes, v7 May 2023)",
)
GUP_FORCE_COW_ONLY = Rule(
    "gup_force_cow_only",
    "check_vma_flags",
    "mm/gup.c",
    (3, 15),
    "a FOLL_FORCE write to a VMA without VM_WRITE is allowed only in a COW mapping (not shared)",
    note="cda540ace6a1 'mm: get_user_pages(write,force) refuse to COW in shared areas'; 2.6.27 "
    "needed VM_MAYWRITE only",
)
POPULATE_WRITE_PRIVATE = Rule(
    "populate_write_private",
    "populate_vma_page_range (__mlock_vma_pages_range until 4.0)",
    "mm/gup.c",
    (2, 6, 38),
    "MAP_POPULATE/mlock write-fault only private writable VMAs (shared ones are read, not dirtied), "
    "with FOLL_FORCE on any accessible VMA; VM_IO/VM_PFNMAP VMAs are skipped",
    note="5ecfda041e4b 'mlock: avoid dirtying pages and triggering writeback' (Jan 2011); 2.6.27's "
    "make_pages_present wrote whenever VM_WRITE",
)
MAP_SYNC = Rule(
    "map_sync",
    "do_mmap / daxdev_mapping_supported",
    "mm/mmap.c",
    (4, 15),
    "MAP_SHARED_VALIDATE refuses flags the file does not support (MAP_SYNC without FOP_MMAP_SYNC) with "
    "-EOPNOTSUPP; MAP_SYNC sets VM_SYNC, which a DAX filesystem's ->mmap refuses (-EOPNOTSUPP) on a "
    "non-DAX inode or a dax_device that is not synchronous",
    note="1c9725974074 'mm: introduce MAP_SHARED_VALIDATE' and b6fb293f2497 'mm: Define MAP_SYNC and "
    "VM_SYNC flags' (J. Kara, D. Williams; 4.15); 6.18 do_mmap computes VM_SYNC in calc_vm_flag_bits "
    "before its MAP_SHARED case strips non-legacy flags",
)
DAX_NO_MIXEDMAP = Rule(
    "dax_no_mixedmap",
    "ext4_file_mmap_prepare / xfs_file_mmap",
    "fs/ext4/file.c",
    (4, 19),
    "a DAX file's VMA is no longer VM_MIXEDMAP (ext4 sets VM_HUGEPAGE and ext4_dax_vm_ops)",
    note="e1fb4a086495 'dax: remove VM_MIXEDMAP for fsdax and device dax' (D. Jiang, 4.19); 6.18 "
    "ext4_file_mmap_prepare: desc->vm_ops = &ext4_dax_vm_ops; desc->vm_flags |= VM_HUGEPAGE",
)
DAX_REFCOUNTED_FOLIOS = Rule(
    "dax_refcounted_folios",
    "dax_fault_iter / vmf_insert_page_mkwrite",
    "fs/dax.c",
    (6, 15),
    "fs-dax maps a ZONE_DEVICE folio as a normal page (refcount, file rmap, MM_FILEPAGES) instead of a "
    "special devmap PTE; a hole is the shared zero page, special and uncounted (dax_load_hole)",
    note="A. Popple's 'fs/dax: fix ZONE_DEVICE page reference counts' series (vmf_insert_page_mkwrite, "
    "dax_folio_init); the reference gives about 6.15, not verified; the fs/dax.c read still has pfn_t "
    "(removed about 6.16/6.17)",
)
RULES: tuple[Rule, ...] = (
    FILEMAP_XIP,
    XIP_SPARSE_VM_INSERT_PAGE,
    BAD_PAGE_MAP_REPORT,
    ZERO_PAGE,
    FILE_FAULT_SIGBUS,
    FORK_COPIES_MIXEDMAP,
    FORK_COPIES_PINNED,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    REMAP_DONTEXPAND_DONTDUMP,
    DAX,
    GUP_EEXIST,
    VMF_INSERT,
    PIN_USER_PAGES,
    FIND_NORMAL_PAGE,
    VM_INSERT_PFN_ERRNO,
    VMF_INSERT_MIXED_MKWRITE,
    VMF_INSERT_PFN_PROT,
    VM_MIXED_OK,
    MIXED_ZEROPAGE,
    VM_INSERT_PAGES,
    ZAP_VMA_PTES_VOID,
    REMAP_ZAP_ON_ERROR,
    FORK_WRPROTECT_WRITABLE,
    SMAPS_RSS_NORMAL_ONLY,
    GUP_PIN_COUNTING_BIAS,
    GUP_PAGES_EEXIST,
    GUP_ZERO_PAGE_UNPINNED,
    FOLL_LONGTERM,
    GUP_LONGTERM_FILE_WRITE,
    GUP_FORCE_COW_ONLY,
    POPULATE_WRITE_PRIVATE,
    MAP_SYNC,
    DAX_NO_MIXEDMAP,
    DAX_REFCOUNTED_FOLIOS,
)
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}

_REPLACED_BY = {
    "filemap_xip": "DAX (fs/dax.c) replaced it: map the file through a DAX-capable device",
    "xip_sparse_vm_insert_page": "DAX (fs/dax.c) replaced filemap_xip",
    "vm_insert_pfn_errno": "use vmf_insert_pfn / vmf_insert_mixed (mixedmap.mm.vmf)",
}
