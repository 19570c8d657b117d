"""`mixedmap xip` on the installed first-party arches: the seed's memmap arithmetic."""

from __future__ import annotations

import json

import pytest

from mixedmap.cli import run
from mixedmap.plugin.registry import default_registry

GiB = 1 << 30
CASES = [
    ("x86_64", "2.6.27", "brd", ["size=1G"], "512M", GiB // 4096 * 64, True),
    ("x86_64", "6.18", "pmem", ["size=1G", "memmap=true"], "1G", GiB // 4096 * 64, True),
    ("x86_64", "6.18", "pmem", ["size=1G", "memmap=false"], "1G", 0, False),
    ("ppc64", "2.6.27", "axonram", ["size=1G"], "1G", 0, False),
    ("s390x", "2.6.27", "dcssblk", ["segment=IMAGE", "start=1G", "size=1G"], "512M", 0, False),
    (
        "s390x",
        "2.6.27",
        "dcssblk",
        ["segment=IMAGE", "start=1G", "size=1G", "pre_series=true"],
        "512M",
        GiB // 4096 * 64,
        True,
    ),
]


@pytest.mark.parametrize(("arch", "kernel", "driver", "params", "ram", "memmap", "struct_page"), CASES)
def test_xip_create_reports_struct_page_cost(
    arch: str,
    kernel: str,
    driver: str,
    params: list[str],
    ram: str,
    memmap: int,
    struct_page: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if arch not in default_registry().names:
        pytest.skip(f"{arch} is not installed")
    argv = ["xip", "create", "--arch", arch, "--kernel", kernel, "--ram", ram, "-d", driver]
    for p in params:
        argv += ["-p", p]
    assert run([*argv, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    dev = rec["device"]
    assert dev["size"] == GiB and dev["memmap_bytes"] == memmap and dev["struct_page"] is struct_page
    da = rec["direct_access(0)"]
    if "error" not in da:
        assert da["pfn_valid"] is struct_page
    assert run(argv) == 0
    assert driver in capsys.readouterr().out


def test_xip_driver_of_another_profile_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    if "x86_64" not in default_registry().names:
        pytest.skip("x86_64 is not installed")
    assert run(["xip", "create", "--arch", "x86_64", "--kernel", "6.18", "-d", "brd", "-p", "size=4M"]) == 2
    assert "does not exist under kernel 6.18" in capsys.readouterr().err
