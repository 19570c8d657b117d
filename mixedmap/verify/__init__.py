"""Check mixedmap's page tables against walkers nobody here wrote (issue 12).

:func:`mixedmap.verify.driver.run` builds random mappings per (arch, profile, mode) and asks
drgn's Linux walkers (:mod:`.drgn_walker`) and volatility3's Intel32e
(:mod:`.volatility_walker`) where each VA goes; ``mixedmap verify`` is its command line.
"""

from mixedmap.verify.base import Answer, Built, Walker
from mixedmap.verify.driver import Cell, Disagreement, Report, VerifyError, build, case_specs, run

__all__ = [
    "Answer", "Built", "Cell", "Disagreement", "Report", "VerifyError", "Walker", "build", "case_specs", "run",
]  # fmt: skip
