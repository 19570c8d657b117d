"""The mm layer: address spaces, VMAs, and the paths of mm/memory.c that care about
special mappings (insert, remap, zap, fork, fault, COW, gup)."""
