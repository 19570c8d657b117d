"""/proc/PID/smaps as 2.6.27 ``fs/proc/task_mmu.c`` counts it (kernel-mm-semantics.md 6.9,
invariant 29): Rss counts every present PTE, special ones included (``resident`` is added
before ``vm_normal_page`` is asked); Shared/Private/Referenced/Pss count only normal pages;
the VmFlags mnemonics (a later line, 3.8) name the special-mapping flags.
"""

from __future__ import annotations

from typing import Any

import pytest

from mixedmap.mm import memory
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE

from .helpers import VM, Env, inserting, map_device

ANON = MAP_PRIVATE | MAP_ANONYMOUS
SIZES = ("Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced")


def _smaps(mm: MM, addr: int) -> dict[str, Any]:
    (rec,) = [r for r in mm.smaps() if r["start"] <= addr < r["end"]]
    return rec


def _pte_dirty_capable(env: Env, pte: int) -> bool:
    """s390 keeps dirty/young in storage keys: its PTE never reads dirty."""
    return env.dirty(int(env.ops.pte_mkdirty(pte)))


def test_rss_includes_special_ptes_nothing_else_does(env: Env) -> None:
    mm = env.m.new_mm()
    ram = env.driver_pages(4)[0]  # pfn_valid RAM behind the special PTEs: must still not count
    addr, vma = map_device(env, mm, 6, shared=True)  # non-COW: a partial remap is allowed
    memory.remap_pfn_range(vma, addr, ram, 4 * env.ps)  # pages 0-3 of 6
    mm.access(addr)  # young
    rec = _smaps(mm, addr)
    ptes = {f"pte{i}": env.pte(mm, addr + i * env.ps) for i in range(6)}
    assert rec["Size"] == 6 * env.ps and rec["Rss"] == 4 * env.ps, env.say(
        f"Rss counts the 4 special PTEs: {rec}", **ptes
    )
    assert all(rec[k] == 0 for k in SIZES), env.say(f"special PTEs count in no other field: {rec}", **ptes)
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"and in no RSS counter: {mm.rss}")


def test_normal_pages_private_then_shared_after_fork(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(3 * env.ps, "rw", ANON)
    mm.write(addr, b"a")
    mm.write(addr + env.ps, b"b")
    pte = env.pte(mm, addr)
    dirty = _pte_dirty_capable(env, pte)
    rec = _smaps(mm, addr)
    priv = "Private_Dirty" if dirty else "Private_Clean"
    want = dict.fromkeys(SIZES, 0) | {"Pss": 2 * env.ps, priv: 2 * env.ps, "Referenced": 2 * env.ps}
    if not env.young(int(env.ops.pte_mkyoung(pte))):
        want["Referenced"] = 0  # no young bit in the PTE (s390 storage keys)
    assert rec["Rss"] == 2 * env.ps and {k: rec[k] for k in SIZES} == want, env.say(
        f"{rec} != {want}", pte=pte
    )
    child = mm.fork()
    for m_ in (mm, child):
        rec = _smaps(m_, addr)
        shared = "Shared_Dirty" if dirty else "Shared_Clean"
        assert rec["Rss"] == 2 * env.ps, env.say(f"Rss after fork {rec}")
        assert rec[shared] == 2 * env.ps and rec[priv] == 0, env.say(f"mapcount 2 -> shared: {rec}")
        assert rec["Pss"] == env.ps, env.say(f"Pss = 2 pages / 2 mappers: {rec['Pss']}")
    mm.write(addr, b"x")  # COW: page 0 private again in both
    for m_ in (mm, child):
        rec = _smaps(m_, addr)
        assert rec["Pss"] == env.ps + env.ps // 2, env.say(f"one private + one shared page: {rec['Pss']}")


def test_cow_pfnmap_counts_only_the_cowed_page_beyond_rss(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 4, shared=False)
    memory.remap_pfn_range(vma, addr, env.devmem(4), 4 * env.ps)
    mm.write(addr + 2 * env.ps, b"c")
    rec = _smaps(mm, addr)
    pte = env.pte(mm, addr + 2 * env.ps)
    priv = "Private_Dirty" if _pte_dirty_capable(env, pte) else "Private_Clean"
    assert rec["Rss"] == 4 * env.ps, env.say(f"Rss: 3 special + 1 COWed: {rec}", pte=pte)
    assert rec["Pss"] == env.ps and rec[priv] == env.ps, env.say(
        f"only the COWed page is a page: {rec}", pte=pte
    )
    assert rec["Shared_Clean"] == rec["Shared_Dirty"] == 0, env.say(f"{rec}")


def test_vm_insert_mixed_ram_page_in_smaps_follows_the_scheme(env: Env) -> None:
    mm = env.m.new_mm()
    ram = env.driver_pages(1)[0]
    dev = env.devmem(1)
    pfns = [ram, dev]
    addr, _ = map_device(
        env, mm, 2, shared=True, flags=VM.MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: pfns[i])
    )
    mm.access(addr)
    mm.access(addr + env.ps)
    rec = _smaps(mm, addr)
    pte = env.pte(mm, addr)
    assert rec["Rss"] == 2 * env.ps, env.say(f"both PTEs resident: {rec}", pte=pte)
    normal = env.scheme == "B"  # a refcounted page only without the special bit
    counted = rec["Private_Clean"] + rec["Private_Dirty"] + rec["Shared_Clean"] + rec["Shared_Dirty"]
    assert counted == (env.ps if normal else 0) and rec["Pss"] == (env.ps if normal else 0), env.say(
        f"scheme {env.scheme}: the RAM page is {'normal' if normal else 'special'}: {rec}", pte=pte
    )


VMFLAGS = [
    ("anon-private-rw", "rd wr mr mw me"),
    ("remap-private", "rd wr mr mw me pf io"),
    ("remap-shared", "rd wr sh mr mw me ms pf io"),
    ("mixed-shared", "rd wr sh mr mw me ms mm"),
    ("mixed-shared-rofile", "rd mr me ms mm"),
    ("mixed-private-ro", "rd mr mw me mm"),
    ("dontcopy-exec", "rd ex mr mw me dc"),
]


@pytest.mark.parametrize(("kind", "want"), VMFLAGS, ids=[v[0] for v in VMFLAGS])
def test_vmflags_mnemonics(env: Env, kind: str, want: str) -> None:
    """Kernel bit order; VM_RESERVED (set by 2.6.27 remap_pfn_range) has no mnemonic -- it was
    gone when the line appeared, and "rr" there is VM_RAND_READ."""
    mm = env.m.new_mm()
    if kind == "anon-private-rw":
        addr = mm.mmap(env.ps, "rw", ANON)
    elif kind.startswith("remap"):
        addr, vma = map_device(env, mm, 1, shared=kind.endswith("shared"))
        memory.remap_pfn_range(vma, addr, env.devmem(1), env.ps)
        assert vma.flags & VM.RESERVED, env.say("2.6.27 remap_pfn_range sets VM_RESERVED")
    elif kind == "mixed-shared":
        addr, _ = map_device(env, mm, 1, shared=True, flags=VM.MIXEDMAP)
    elif kind == "mixed-shared-rofile":
        addr, _ = map_device(env, mm, 1, shared=True, prot="r", writable=False, flags=VM.MIXEDMAP)
    elif kind == "mixed-private-ro":
        addr, _ = map_device(env, mm, 1, shared=False, prot="r", writable=False, flags=VM.MIXEDMAP)
    else:
        addr = mm.mmap(env.ps, "rx", ANON)
        avma = mm.find_vma(addr)
        assert avma is not None
        avma.flags |= VM.DONTCOPY
    rec = _smaps(mm, addr)
    assert rec["VmFlags"] == want, env.say(f"{kind}: VmFlags {rec['VmFlags']!r}, want {want!r}")
