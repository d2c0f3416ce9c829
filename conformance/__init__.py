"""P⁴ conformance harness: run the language-neutral vectors against any implementation's adapter.

Entry points: ``p4-conformance`` (:func:`conformance.runner.main`) and, for pytest,
:func:`conformance.runner.run_vectors_inprocess`.
The adapter contract is ``conformance/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
