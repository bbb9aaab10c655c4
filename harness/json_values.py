"""Values made ready for JSON (paths, enums, non-finite floats), without importing numpy or pandas."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Any


def jsonable(obj: Any) -> Any:
    """JSON-ready values: paths and enums as text; JSON has no inf or NaN, so PSNR inf is the string 'inf' and NaN null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
