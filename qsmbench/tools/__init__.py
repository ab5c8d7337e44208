"""Tools around runs: evaluating and filming saved policies, measuring speed, the multimodality demo."""
