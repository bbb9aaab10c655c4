"""HTML reports of runs and comparisons of runs (``harness report``, ``harness compare``): self-contained pages."""
