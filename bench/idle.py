#!/usr/bin/env python3
"""bench/idle's driver: the worker's CPU share in each idle state of
test/e2e/idle.py, measured over SECONDS each, printed beside the goal.

    idle.py [SECONDS]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "e2e"))
from harness import start  # noqa: E402
import idle  # noqa: E402

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20
pg, double = start(settings={"twilio_outbox.backoff_base_ms": 100,
                             "twilio_outbox.backoff_max_ms": 2000})
shares = idle.measure(pg, double, seconds)
print(f"{'state':<14} {'CPU, % of a core':>17} {'goal':>6}")
for state, value in shares.items():
    print(f"{state:<14} {100 * value:>17.2f} {'<= 2':>6}")
print(f"worst: {100 * max(shares.values()):.2f} % of a core over {seconds:.0f} s per state")
