"""The private Tor network launcher's command line (the implementation is p4ref.io.tornet).

    python tools/tornet.py up [--dir DIR] [--authorities 3] [--relays 2] [--clients 2]
    python tools/tornet.py down --dir DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `p4ref` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p4ref.io.tornet import main

if __name__ == "__main__":
    raise SystemExit(main())
