"""``python -m p4ref.adapter``: the reference conformance adapter on stdin/stdout."""

from p4ref.adapter import main

raise SystemExit(main())
