"""XIP driver models: the 2008 direct_access contract and struct page presence as declared.

Every driver model an arch offers under the profile is created from its ``example``
parameters on a 256 MiB machine.
"""

from __future__ import annotations

import pytest

from mixedmap import ERANGE, KernelErrno, XipFS
from mixedmap.conformance.cases import ArchCase
from mixedmap.mm.vma import MAP_PRIVATE
from mixedmap.xip import filemap
from mixedmap.xip.device import SECTOR_SIZE


def _drivers(case: ArchCase) -> list[str]:
    m = case.machine(ram="256M")
    return sorted(m.xip_drivers())


class TestXipDrivers:
    """direct_access, contents, struct pages, memmap cost, release."""

    def test_direct_access_contract(self, arch_profile: ArchCase) -> None:
        drivers = _drivers(arch_profile)
        if not drivers:
            pytest.skip(f"{arch_profile.arch} offers no XIP driver under {arch_profile.profile}")
        for name in drivers:
            m = arch_profile.machine(ram="256M")
            free = m.pages.nr_free
            dev = m.create_xip_device(name, **dict(m.xip_drivers()[name].example))
            ps = m.page_size
            per_page = ps // SECTOR_SIZE
            last = (dev.size // ps - 1) * per_page
            for sector in (0, per_page, last):
                try:
                    kaddr, pfn = dev.direct_access(sector)
                except KernelErrno as exc:  # a driver may refuse (e.g. pmem without DAX)
                    pytest.skip(f"{arch_profile.id}: {name}.direct_access refuses: {exc}")
                assert dev.frame(sector // per_page) == pfn, (
                    f"{arch_profile.id}: {name} sector {sector}: pfn {pfn:#x}"
                )
                assert bool(m.pfn_valid(pfn)[0]) == dev.has_struct_page, (
                    f"{arch_profile.id}: {name} pfn {pfn:#x}"
                )
                assert isinstance(kaddr, int) and kaddr >= 0
            with pytest.raises(ERANGE):
                dev.direct_access(dev.size // SECTOR_SIZE)
            pages = dev.size // ps
            want = pages * m.mode.mode.memory.struct_page_size if dev.has_struct_page else 0
            assert dev.memmap_bytes == want, f"{arch_profile.id}: {name} memmap {dev.memmap_bytes} != {want}"
            blob = bytes(range(256)) * 32
            dev.fill(blob, ps)
            assert dev.read(ps, len(blob)) == blob
            _, pfn1 = dev.direct_access(per_page)
            assert m.mem.read(pfn1 * ps, 64) == blob[:64], f"{arch_profile.id}: {name}: bytes not at its pfn"
            m.remove_xip_device(dev.name)
            assert m.pages.nr_free == free, f"{arch_profile.id}: {name} release leaked RAM pages"

    def test_xip_mapping_through_driver(self, arch_profile: ArchCase) -> None:
        """A private XIP mapping on the arch's own device: bytes, COW, no device writes."""
        drivers = _drivers(arch_profile)
        if not drivers:
            pytest.skip(f"{arch_profile.arch} offers no XIP driver under {arch_profile.profile}")
        for name in drivers:
            m = arch_profile.machine(ram="256M")
            dev = m.create_xip_device(name, **dict(m.xip_drivers()[name].example))
            try:
                dev.direct_access(0)
            except KernelErrno:
                continue  # no DAX on this configuration
            fs = XipFS(dev, read_only=False) if not dev.read_only else XipFS(dev)
            data = b"XIP!" * (m.page_size // 4) * 2
            fs.create("f", data)
            mm = m.new_mm()
            a = mm.mmap(len(data), "rw", MAP_PRIVATE, file=fs.open("f"))
            assert mm.read(a, 8) == data[:8]
            mm.write(a + 1, b"?")
            assert mm.read(a, 4) == b"X?P!" and fs.open("f").read(0, 4) == b"XIP!", (
                f"{arch_profile.id}: {name}"
            )
            assert mm.rss["anon"] == 1
            mm.exit()
            filemap.release_sparse_page(m)
            m.remove_xip_device(dev.name)
            assert m.pages.leaks() == {}, f"{arch_profile.id}: {name}: {m.pages.leaks()}"

    def test_image_params_hold_an_image(self, arch_profile: ArchCase) -> None:
        """A driver that declares ``image_params`` creates a device of exactly that size from
        them (the guests experiment relies on it), and its ``pre_series`` is parameters the
        driver accepts or a reason, never silently empty."""
        m0 = arch_profile.machine(ram="256M")
        models = {n: d for n, d in m0.xip_drivers().items() if d.image_params is not None}
        if not models:
            pytest.skip(f"{arch_profile.arch} declares no image_params under {arch_profile.profile}")
        size = 16 << 20
        for name, model in models.items():
            m = arch_profile.machine(ram="256M")
            assert model.image_params is not None
            params = model.image_params(m, size)
            dev = m.create_xip_device(name, **params)
            assert dev.size == size, (
                f"{arch_profile.id}: {name}: image_params gave a {dev.size:#x}-byte device"
            )
            m.remove_xip_device(dev.name)
            if isinstance(model.pre_series, str):
                assert model.pre_series, f"{arch_profile.id}: {name}: pre_series needs a reason or parameters"
            else:
                accepted = {k for k, _ in model.params}
                extra = {k for k, _ in model.pre_series} - accepted
                assert not extra, f"{arch_profile.id}: {name}: pre_series uses unknown parameters {extra}"
