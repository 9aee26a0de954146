"""Shared benchmark helpers: percentiles, output folder, the final JSON line."""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def out_dir(path: str = 'bench_out') -> str:
    os.makedirs(path, exist_ok=True)
    return path


def pct(values, q: float) -> float:
    """q-th percentile of ``values`` (NaN when empty), rounded for printing."""
    v = np.asarray(values, float)
    return float(np.percentile(v, q)) if v.size else float('nan')


def emit(result: dict) -> None:
    """Print the result as the last line of output: one JSON object."""
    clean = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    sys.stdout.flush()
    print(json.dumps(clean), flush=True)
