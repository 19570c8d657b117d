"""mixedmap arch plugin for 64-bit PowerPC Book3S (ppc64).

Modes: ``hash-4k``/``hash-64k`` under kernels 2.6.26 and 2.6.27 (the software Linux tree of
the hash MMU, whose directory entries hold kernel virtual addresses), and ``radix-4k``,
``radix-64k``, ``hash-4k``, ``hash-64k`` under 6.18. All entries are big-endian.
"""

__version__ = "0.1.0"
