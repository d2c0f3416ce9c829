"""I/O drivers: the only place in p4ref that imports asyncio, stem, sockets or storage
(STYLE.md "Layout"). Each driver is thin; protocol logic lives in the pure machines."""
