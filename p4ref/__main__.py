"""``python -m p4ref`` runs the ``p4`` command line (:mod:`p4ref.cli`)."""

from __future__ import annotations

from p4ref.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
