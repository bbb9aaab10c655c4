"""The published training protocol (``harness train``): data, augmentation, the loop, memory estimates."""
