"""P⁴ reference implementation (``p4ref``): the Persistent Point-to-Point Protocol.

Layers, each a pure sans-I/O package mirroring one spec document (see ``spec/``):
framing (p4-01), identity and pairing (p4-02), rendezvous (p4-03), session (p4-04),
channels (p4-05). ``p4ref.io`` holds the drivers that touch disk, sockets, Tor and aiortc;
``p4ref.cli`` is the ``p4`` command. Importing this package imports nothing else.
"""

__version__ = "0.1.0"
