"""Training: a checked run (`prepare`) built into its parts and run by the loop (`train`), which returns an `Outcome`."""
