"""Self-contained model files (torch only), installed as ``harness.models``."""
