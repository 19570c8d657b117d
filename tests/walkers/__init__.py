"""Independent page-table walkers, one per arch, written from each architecture manual."""
