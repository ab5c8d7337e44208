"""qsmbench: seed-batched benchmarks of diffusion and Gaussian policies on continuous control."""

__version__ = "0.1.0"
