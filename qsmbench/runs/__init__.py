"""The on-disk contract of a run: where its files go (layout), what a run file holds (format), how files are
written (write) and read back (read), the claim on a run directory (locking), checkpoints, saved policies, and
a results tree as one table (results.load)."""
