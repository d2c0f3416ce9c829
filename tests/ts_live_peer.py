"""The Python reference peer of the TS live-interop tests (tests/test_ts_live.py); not an API.

``python tests/ts_live_peer.py '<json config>'`` runs one session (p4ref.session) with p4-05
channels (p4ref.channels) over aiortc generations (p4ref.io.webrtc), state in memory.  Config:
``seed`` (hex, 32 B identity seed), ``peer_pub`` (hex).

Signalling, two ways:

- *test-carried*: this peer makes RV_OFFER frames with the rendezvous codec (signed by its
  identity key, ``stream_nonce`` zero because there is no RV_HELLO stream) and checks the
  peer's RV_ANSWER (schema, keys, epoch window, signature, SDP fingerprint = signed
  fingerprint) before it uses the SDP.  The frames go out as JSON lines on stdout
  (``{"ev": "rv", "frame": hex}``) and come in on stdin (``{"cmd": "rv", "frame": hex}``).
- *p4-03 over the private Tor network* (``rdv_dial`` / ``rdv_listen``): the reference's
  ``TorDriver`` and the link's ``Signaller`` dial the peer's derived epoch onion (dial-only)
  or publish this side's and wait for the dial-only peer, and run the reference
  ``RendezvousMachine`` on the stream (HELLO exchange, OFFER/ANSWER, replay cache, mark).

A generation whose data channel never opens (ICE/DTLS failure, CONNECT_TIMEOUT) is abandoned
(``gen_failed``); its offerer offers the next one (p4-04 §5.2 RECONNECT_NEEDED).

Commands (stdin, JSON lines): ``offer`` (``generation``, default the one after the highest this
side has seen), ``rv``, ``rdv_dial`` / ``rdv_listen`` (``control_port``, ``socks_port``, ``cookie``,
``data_dir``: this side's tor; ``root``: the pair root key; ``incarnation``), ``chsend``
(``name``, ``count``: send ``count`` messages on channel ``name``, which this side opens),
``stop``.  Events (stdout): ``ready``, ``rv``, ``rv_sent``, ``tor_dial``,
``rdv_authenticated``, ``rdv_offer``, ``rdv_answer``, ``gen_open`` (data channel open),
``gen_failed``, ``open`` (session CONNECTION_OPEN), ``closed``, ``failed``, ``status``,
``chopen``, ``chrecv`` (per message: ``name``, ``n`` messages so far, ``digest`` of everything
so far), ``csent_all``, ``error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from typing import Any

import aioice.ice  # noqa: F401  (p4ref.io.webrtc wraps its address source)
from nacl.signing import SigningKey

from p4ref.channels import (
    ChannelConfig,
    ChannelData,
    ChannelMux,
    ChannelOpened,
    CreditGranted,
)
from p4ref.errors import P4Error
from p4ref.framing import HEADER_LEN, FrameType, Path, decode_frame, encode_frame
from p4ref.io.signal import PeerReplay
from p4ref.io.tor import TorConfig, TorDriver
from p4ref.io.webrtc import DirectConfig, Generation
from p4ref.link._signalling import Signaller
from p4ref.rendezvous import (
    Answer,
    AnswerReceived,
    Hello,
    Offer,
    OfferReceived,
    decode_message,
    encode_message,
    epoch_of,
    sign_message,
    verify_message,
)
from p4ref.session import (
    Acked,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpen,
    MessageReceived,
    SessionMachine,
)

ZERO16 = b"\0" * 16


def payload(name: str, i: int, size: int | None = None) -> bytes:
    """Message ``i`` of channel ``name``: 1 B … 40 kB (some need several DATA items), or
    ``size`` bytes."""
    if size is None:
        size = 1 + (i * 7919 + len(name) * 131) % 40000
    block = hashlib.sha256(f"{name}:{i}".encode()).digest()
    return (block * (size // 32 + 1))[:size]


def out(ev: str, **kw: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
    sys.stdout.flush()


class Peer:
    def __init__(self, seed: bytes, peer_pub: bytes) -> None:
        self.key = SigningKey(seed)
        self.my_pub = bytes(self.key.verify_key)
        self.peer_pub = peer_pub
        self.m = SessionMachine(seed, peer_pub, rng=os.urandom)
        self.mux = ChannelMux(low=self.m.is_low, config=ChannelConfig())
        self.direct = DirectConfig(host_addresses=("127.0.0.1",))
        self.gens: dict[int, Generation] = {}
        self.opened_gens: set[int] = set()
        self.early: dict[int, list[bytes]] = {}
        self.pending_offer: dict[int, tuple[Generation, bytes]] = {}
        self.names: dict[int, str] = {}
        self.recv_hash: dict[str, Any] = {}
        self.recv_count: dict[str, int] = {}
        self.credit = asyncio.Event()
        self.closing: list[asyncio.Task[None]] = []
        self.tor: TorDriver | None = None
        self.sig: Signaller | None = None  # p4-03 signalling over the private Tor network
        self.highest = 0  # the highest generation offered or answered
        self.direct_failures = 0  # consecutive generations that never opened (RDV-67's j)
        self.t0 = time.monotonic()

    def now(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    # -------------------------------------------------------------- plumbing

    def process(self) -> None:
        m = self.m
        while True:
            for conn, data in m.data_to_send():
                g = self.gens.get(conn)
                if data[1:2] == bytes([FrameType.ERROR]):  # what the machine refused, and why
                    out("error_sent", conn=conn,
                        text=data[HEADER_LEN:].decode("utf-8", "replace"))
                if g is not None and g.state == "open":
                    g.send(data)
            ev = m.next_event()
            if ev is None:
                break
            if isinstance(ev, MessageReceived):
                self.on_item(ev.payload)
                m.inbox_committed(ev.seq, self.now())
            elif isinstance(ev, ConnectionOpen):
                out("open", gen=ev.generation, conn=ev.conn, active=ev.active)
                if ev.active:
                    self.submit(self.mux.resync())
            elif isinstance(ev, ConnectionClosed):
                out("closed", conn=ev.conn)
                g = self.gens.pop(ev.conn, None)
                self.opened_gens.discard(ev.conn)
                if g is not None:
                    self.closing.append(asyncio.create_task(g.close_when_drained()))
            elif isinstance(ev, ConnectionFailed):
                out("failed", conn=ev.conn, code=ev.code, by_peer=ev.by_peer)
                g = self.gens.pop(ev.conn, None)
                self.opened_gens.discard(ev.conn)
                if g is not None:
                    g.close()
            elif isinstance(ev, Acked):
                pass
            else:
                name = getattr(ev, "name", type(ev).__name__)
                out("session", name=name, detail=repr(ev))
        if m.status != getattr(self, "_status", None):
            self._status = m.status
            out("status", status=m.status)

    def submit(self, items: list[bytes]) -> None:
        for it in items:
            self.m.send(it, self.now())
        if items:
            self.process()

    def on_item(self, item: bytes) -> None:
        for ev in self.mux.receive(item):
            if isinstance(ev, ChannelOpened):
                self.names[ev.chan] = ev.name
                self.recv_hash[ev.name] = hashlib.sha256()
                self.recv_count[ev.name] = 0
                out("chopen", name=ev.name)
            elif isinstance(ev, ChannelData):
                name = self.names[ev.chan]
                self.recv_hash[name].update(ev.data)
                if ev.end_of_message:
                    self.recv_count[name] += 1
                    n = self.recv_count[name]
                    out("chrecv", name=name, n=n, digest=self.recv_hash[name].copy().hexdigest())
                for it in self.mux.consumed(ev.chan, len(ev.data)):
                    self.m.send(it, self.now())
            elif isinstance(ev, CreditGranted):
                self.credit.set()
            else:
                out("channel", detail=repr(ev))
        for it in self.mux.items_to_send():
            self.m.send(it, self.now())

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            t = self.m.get_timer()
            if t is not None and t <= self.now():
                self.m.handle_timer(self.now())
                self.process()

    # -------------------------------------------------------------- generations

    def on_data(self, number: int, data: bytes) -> None:
        if data[1:2] == bytes([FrameType.ERROR]):
            out("error_received", conn=number, text=data[HEADER_LEN:].decode("utf-8", "replace"))
        if number not in self.opened_gens:
            self.early.setdefault(number, []).append(data)
            return
        self.m.receive_data(number, data, self.now())
        self.process()

    async def offer(self, number: int) -> None:
        self.highest = max(self.highest, number)
        g = await Generation.offer(number, self.direct,
                                   on_message=lambda d: self.on_data(number, d),
                                   on_closed=lambda: self.on_data(number, b""))
        self.gens[number] = g
        if self.sig is not None:  # p4-03 over the private Tor network: the stream's machine
            self.pending_offer[number] = (g, b"")
            self.sig.offer(g.local_sdp, g.local_fingerprint, number, self.m.rx_next - 1,
                           inband=None)
            out("rv_sent", kind="offer", gen=number, path="stream")
            self.closing.append(asyncio.create_task(self.opened(g, number)))
            return
        nonce = os.urandom(16)
        msg = Offer(epoch=epoch_of(time.time()), nonce=nonce, generation=number,
                    sdp=g.local_sdp, fingerprint=g.local_fingerprint, last_rx=self.m.rx_next - 1,
                    stream_nonce=ZERO16)
        signed = sign_message(msg, self.key, self.peer_pub)
        self.pending_offer[number] = (g, nonce)
        frame = encode_frame(encode_message(signed), Path.TOR)
        out("rv", frame=frame.hex(), kind="offer", gen=number)
        self.closing.append(asyncio.create_task(self.opened(g, number)))

    async def on_rv(self, frame_hex: str) -> None:
        msg = decode_message(decode_frame(bytes.fromhex(frame_hex), Path.TOR))
        verify_message(msg, self.peer_pub, self.my_pub)
        e = epoch_of(time.time())
        if not isinstance(msg, Answer | Offer) or not e - 1 <= msg.epoch <= e + 1:
            out("error", detail=f"unexpected RV message {type(msg).__name__}")
            return
        if isinstance(msg, Offer):  # answerer (the aiortc x aiortc baseline of the bench)
            await self.answer(msg)
            return
        pend = self.pending_offer.pop(msg.generation, None)
        if pend is None or pend[1] != msg.offer_nonce:
            out("error", detail=f"ANSWER for no OFFER of ours (generation {msg.generation})")
            return
        await pend[0].accept_answer(msg.sdp, msg.fingerprint)  # checks the SDP's fingerprint

    async def answer(self, msg: Offer) -> None:
        number = msg.generation
        g = await self.answering(number, msg.sdp, msg.fingerprint)
        ans = Answer(epoch=epoch_of(time.time()), nonce=os.urandom(16), generation=number,
                     sdp=g.local_sdp, fingerprint=g.local_fingerprint,
                     last_rx=self.m.rx_next - 1, offer_nonce=msg.nonce, stream_nonce=ZERO16)
        signed = sign_message(ans, self.key, self.peer_pub)
        out("rv", frame=encode_frame(encode_message(signed), Path.TOR).hex(), kind="answer",
            gen=number)
        await self.opened(g, number)

    async def answering(self, number: int, sdp: str, fingerprint: bytes) -> Generation:
        self.highest = max(self.highest, number)
        g = await Generation.answer(number, sdp, fingerprint, self.direct,
                                    on_message=lambda d: self.on_data(number, d),
                                    on_closed=lambda: self.on_data(number, b""))
        self.gens[number] = g
        return g

    async def opened(self, g: Generation, number: int) -> None:
        try:
            b = await g.opened()
        except P4Error as exc:
            # The data channel never opened (ICE or DTLS failed, or CONNECT_TIMEOUT passed,
            # SES-55).  Seen here: a Node (libdatachannel) offerer starts DTLS when our ICE
            # checks reach it, before it has applied our answer, refuses our certificate with a
            # fatal unknown_ca alert, and aiortc reports "DTLS handshake failed (error [])"
            # (the alert's error was swallowed by its recv; libdatachannel PR #1612).  The session
            # machine never saw this generation, so nothing was sent on it: abandon it and, if
            # this side offered it, offer the next one (p4-04 §5.2 RECONNECT_NEEDED).
            out("gen_failed", gen=number, offerer=g.offerer, detail=str(exc))
            if self.gens.get(number) is g:
                del self.gens[number]
            g.close()
            if g.offerer and number == self.highest:
                # p4-03 RDV-67: wait d - floor(d*r/131072) ms, d = min(2 s * 2^j, 300 s)
                d = min(2000 * 2 ** self.direct_failures, 300_000)
                r = int.from_bytes(os.urandom(2), "big")
                self.direct_failures += 1
                await asyncio.sleep((d - d * r // 131072) / 1000)
                await self.offer(self.highest + 1)
            return
        self.direct_failures = 0  # RDV-67: a data channel opened
        out("gen_open", gen=number)
        self.m.open(number, number, "datachannel", b.local, b.remote, self.now())
        self.opened_gens.add(number)
        self.process()
        for data in self.early.pop(number, []):
            self.m.receive_data(number, data, self.now())
            self.process()

    async def rdv(self, c: dict[str, Any], *, dial: bool) -> None:
        """p4-03 over the private Tor network, with the reference's own pieces: a
        :class:`~p4ref.io.tor.TorDriver` on this side's tor and the link's
        :class:`~p4ref.link._signalling.Signaller`, which runs the
        :class:`~p4ref.rendezvous.RendezvousMachine` on the stream (HELLO exchange, OFFER and
        ANSWER with ``stream_nonce``, the pair's replay cache and high-water mark).  ``dial``:
        this side is dial-only (RDV-65: it publishes nothing and dials the peer's derived epoch
        onion with its client-authorization key); else it publishes its derived onion and
        waits for the dial-only peer."""
        tor = RecordingTor(TorConfig(mode="testnet", control_port=int(c["control_port"]),
                                     socks_port=int(c["socks_port"]),
                                     cookie_path=c["cookie"], data_dir=c["data_dir"]))
        await tor.start()
        self.tor = tor
        root = bytes.fromhex(c["root"])
        inc = bytes.fromhex(c["incarnation"])
        sig = Signaller(tor, self.key.encode(), self.my_pub, self.peer_pub, root,
                        PeerReplay(self.peer_pub), dial_only=dial, peer_dial_only=not dial,
                        incarnation=lambda: inc)
        await sig.start()
        if not dial:
            out("onion", addresses=[h.address for h in tor.published])
        await sig.wait_ready()
        st = sig.stream
        assert st is not None and st.hello_sent is not None and st.hello_received is not None
        sent = decode_message(decode_frame(rv_frame(0x20, st.hello_sent), Path.TOR))
        got = decode_message(decode_frame(rv_frame(0x20, st.hello_received), Path.TOR))
        assert isinstance(sent, Hello) and isinstance(got, Hello)
        out("rdv_authenticated", dialled=getattr(tor, "dialled", []), epoch=got.epoch,
            first_hello_sent_echo=None if sent.echo is None else sent.echo.hex(),
            first_hello_got_echo=None if got.echo is None else got.echo.hex(),
            first_hello_sent_nonce=sent.nonce.hex(), first_hello_got_nonce=got.nonce.hex(),
            peer_incarnation=got.incarnation.hex(), state=st.machine.state.name)
        self.sig = sig
        self.closing.append(asyncio.create_task(self.rdv_events(sig)))

    async def rdv_events(self, sig: Signaller) -> None:
        while True:
            se = await sig.events.get()
            ev = se.event
            if isinstance(ev, OfferReceived):
                out("rdv_offer", gen=ev.generation, glare=ev.glare)
                g = await self.answering(ev.generation, ev.sdp, ev.fingerprint)
                sig.answer(se.stream, g.local_sdp, g.local_fingerprint, self.m.rx_next - 1,
                           inband=None)
                out("rv_sent", kind="answer", gen=ev.generation, path="stream")
                self.closing.append(asyncio.create_task(self.opened(g, ev.generation)))
            elif isinstance(ev, AnswerReceived):
                out("rdv_answer", gen=ev.generation)
                pend = self.pending_offer.pop(ev.generation, None)
                if pend is None:
                    out("error", detail=f"ANSWER for no OFFER of ours ({ev.generation})")
                    continue
                await pend[0].accept_answer(ev.sdp, ev.fingerprint)
            elif ev is None:
                out("tor_closed")
            else:
                out("rdv_end", detail=repr(ev))

    # -------------------------------------------------------------- channels

    async def chsend(self, name: str, count: int, size: int | None = None) -> None:
        chan, items = self.mux.open(name)
        self.submit(items)
        for i in range(count):
            data = payload(name, i, size)
            pos = 0
            while pos < len(data):
                credit = self.mux.credit(chan)
                if credit == 0:
                    self.credit.clear()
                    await self.credit.wait()
                    continue
                piece = data[pos:pos + credit]
                pos += len(piece)
                self.submit(self.mux.write(chan, piece, end_of_message=pos == len(data)))
            if i % 8 == 7:
                await asyncio.sleep(0)
            while len(self.m.s.outbox) > 256:  # keep memory bounded: wait for ACKs
                await asyncio.sleep(0.005)
        h = hashlib.sha256(b"".join(payload(name, i, size) for i in range(count))).hexdigest()
        out("csent_all", name=name, n=count, digest=h)


def rv_frame(ftype: int, body: bytes) -> bytes:
    return bytes([1, ftype, 0]) + len(body).to_bytes(2, "big") + body


class RecordingTor(TorDriver):
    """The reference's Tor driver, recording which onion addresses it dialled."""

    dialled: list[str]

    async def open_stream(self, onion_addr: str, port: int, timeout: float = 60.0,
                          **kw: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not hasattr(self, "dialled"):
            self.dialled = []
        self.dialled.append(onion_addr)
        out("tor_dial", onion=onion_addr, port=port)
        return await super().open_stream(onion_addr, port, timeout, **kw)


def probe_dtls() -> None:
    """Log what OpenSSL says when a DTLS handshake step fails (aiortc only logs FAILED)."""
    from OpenSSL import SSL
    from OpenSSL._util import ffi, lib

    orig = SSL.Connection.do_handshake
    log = logging.getLogger("dtls-probe")

    def do_handshake(self: Any) -> None:
        before = lib.ERR_peek_error()
        try:
            orig(self)
        except SSL.WantReadError:
            raise
        except SSL.Error as exc:
            st = ffi.string(lib.SSL_state_string_long(self._ssl)).decode()
            log.warning("do_handshake failed: %r; error queue before the call %#x; state %s",
                        exc, before, st)
            raise
    SSL.Connection.do_handshake = do_handshake  # type: ignore[method-assign]
    orig_recv = SSL.Connection.recv

    def recv(self: Any, bufsiz: int, flags: int | None = None) -> bytes:
        try:
            return orig_recv(self, bufsiz, flags)
        except (SSL.WantReadError, SSL.ZeroReturnError):
            raise
        except SSL.Error as exc:  # aiortc swallows this one during the handshake
            st = ffi.string(lib.SSL_state_string_long(self._ssl)).decode()
            log.warning("recv failed: %r; state %s", exc, st)
            raise
    SSL.Connection.recv = recv  # type: ignore[method-assign]


def spawn(coro: Any) -> asyncio.Task[None]:
    async def run() -> None:
        try:
            await coro
        except Exception as exc:
            out("error", detail=repr(exc))
    return asyncio.create_task(run())


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    verbose = bool(os.environ.get("P4_TS_LIVE_LOGS"))
    level = (logging.DEBUG if os.environ.get("P4_TS_LIVE_DEBUG")  # all of aiortc's detail
             else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(relativeCreated)d %(name)s %(message)s")
    # always: a DTLS handshake that fails says why (OpenSSL's error, aiortc's DTLS states: a
    # few lines per generation) in the stderr pytest shows with a failure; a CI run under load
    # once failed every generation the Node peer offered with DTLS FAILED, and said no more
    logging.getLogger("aiortc.rtcdtlstransport").setLevel(logging.DEBUG)
    probe_dtls()
    peer = Peer(bytes.fromhex(cfg["seed"]), bytes.fromhex(cfg["peer_pub"]))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = [asyncio.create_task(peer.ticker())]
    out("ready", pub=peer.my_pub.hex())
    while True:
        line = await reader.readline()
        if not line:
            break
        c = json.loads(line)
        cmd = c["cmd"]
        try:
            if cmd == "offer":
                await peer.offer(int(c.get("generation") or peer.highest + 1))
            elif cmd == "rv":
                tasks.append(spawn(peer.on_rv(c["frame"])))
            elif cmd in ("rdv_dial", "rdv_listen"):
                tasks.append(spawn(peer.rdv(c, dial=cmd == "rdv_dial")))
            elif cmd == "chsend":
                tasks.append(spawn(peer.chsend(c["name"], int(c["count"]), c.get("size"))))
            elif cmd == "stop":
                break
        except Exception as exc:  # report, keep running: the test decides
            out("error", detail=repr(exc))
    for t in tasks:
        t.cancel()
    for g in list(peer.gens.values()):
        g.close()
    if peer.sig is not None:
        await peer.sig.close()
    if peer.tor is not None:
        await peer.tor.close()
    out("stopped")


if __name__ == "__main__":
    if os.environ.get("P4_TS_LIVE_PROFILE"):  # cProfile of this peer, written at exit
        import cProfile

        cProfile.run("asyncio.run(main())", os.environ["P4_TS_LIVE_PROFILE"] + f".{os.getpid()}")
    else:
        asyncio.run(main())
