"""The serving process tunes the cyclic garbage collector before it serves (serving.py).

Run in a fresh interpreter: freezing the test runner's own objects would keep every cycle they
form alive for the rest of the suite."""

from __future__ import annotations

import json
import subprocess
import sys


def test_serving_freezes_what_is_imported_and_collects_the_young_less_often() -> None:
    script = (
        "import gc, json; import promptdeck.app, promptdeck.serving as s; "
        "before = (gc.get_freeze_count(), gc.get_threshold()); s.tune_garbage_collector(); "
        "print(json.dumps([before, [gc.get_freeze_count(), gc.get_threshold()], s.YOUNG_GC_THRESHOLD]))"
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    (frozen_before, threshold_before), (frozen, threshold), young = json.loads(done.stdout)
    assert frozen_before == 0 and threshold_before[0] == 700  # CPython's defaults, untouched by import
    assert frozen > 50_000, frozen  # the imported modules' objects are out of the collector's reach
    assert threshold == [young, *threshold_before[1:]]
