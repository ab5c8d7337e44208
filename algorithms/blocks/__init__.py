"""The building blocks the algorithm files import: batched networks, the diffusion schedule and sampler,
random streams, update helpers."""
