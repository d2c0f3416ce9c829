"""One raw aiortc peer for bench_reconnect's aiortc-alone baseline (issue 12 §8); not an API.

``python bench/_aiortc_peer.py '<json config>'`` (config: ``ice_servers`` as in
``_testpeer``) runs in a lab namespace and obeys JSON lines on stdin; it reports JSON lines on
stdout, each with ``ev`` and ``t`` (:func:`time.monotonic`, comparable across processes).
The parent process carries the signalling between the two peers, instantly: this baseline has
no Tor and no P⁴, only what aiortc notices by itself.

- ``{"cmd": "offer"}``: close the current connection, start a new one with a data channel and
  report ``{"ev": "offer", "sdp": ...}`` once gathering is complete;
- ``{"cmd": "answer_to", "sdp": ...}``: close the current connection, answer the offer, report
  ``{"ev": "answer", "sdp": ...}``;
- ``{"cmd": "answer", "sdp": ...}``: apply the answer to the current offer;
- ``{"cmd": "stop"}``.

Reported: ``state`` (``connectionState`` changes, with the connection's number ``pc``),
``open`` (the data channel), and on the answering side ``msg`` per message received (``n``).
The offering side sends a numbered message every 50 ms on an open data channel.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)


def out(ev: str, **kw: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
    sys.stdout.flush()


class Peer:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.config = RTCConfiguration([
            RTCIceServer(s["urls"], s.get("username"), s.get("credential"))
            for s in cfg.get("ice_servers", ())])
        self.pc: RTCPeerConnection | None = None
        self.number = 0
        self.channel: RTCDataChannel | None = None
        self.sent = 0
        self._closing: set[asyncio.Future[None]] = set()

    async def _new(self) -> RTCPeerConnection:
        if self.pc is not None:  # closed on the side: closing a dead one can take a while
            self._closing.add(asyncio.ensure_future(self.pc.close()))
        self.number += 1
        pc, number = RTCPeerConnection(self.config), self.number
        self.pc, self.channel = pc, None

        @pc.on("connectionstatechange")
        def _state() -> None:
            out("state", pc=number, state=pc.connectionState)

        @pc.on("datachannel")
        def _incoming(ch: RTCDataChannel) -> None:
            @ch.on("message")
            def _msg(data: Any) -> None:
                out("msg", pc=number, n=int(data))
            out("open", pc=number)
        return pc

    async def offer(self) -> None:
        pc = await self._new()
        ch = pc.createDataChannel("baseline")
        number = self.number

        @ch.on("open")
        def _open() -> None:
            self.channel = ch
            out("open", pc=number)
        await pc.setLocalDescription(await pc.createOffer())
        out("offer", pc=number, sdp=pc.localDescription.sdp)

    async def answer_to(self, sdp: str) -> None:
        pc = await self._new()
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        out("answer", pc=self.number, sdp=pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def pump(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            ch = self.channel
            if ch is not None and ch.readyState == "open" and ch.bufferedAmount < 65536:
                self.sent += 1
                ch.send(str(self.sent))


async def main(cfg: dict[str, Any]) -> None:
    peer = Peer(cfg)
    pump = asyncio.create_task(peer.pump())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            cmd = json.loads(line)
            c = cmd["cmd"]
            try:
                if c == "offer":
                    await peer.offer()
                elif c == "answer_to":
                    await peer.answer_to(cmd["sdp"])
                elif c == "answer":
                    await peer.answer(cmd["sdp"])
                elif c == "stop":
                    break
            except Exception as exc:  # e.g. gathering during the move: the parent retries
                out("error", cmd=c, error=repr(exc))
    finally:
        pump.cancel()
        if peer.pc is not None:
            await peer.pc.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
