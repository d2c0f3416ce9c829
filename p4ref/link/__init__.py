"""The per-peer link: one paired peer's durable session, as apps, the daemon and benchmarks use it
(ARCHITECTURE decisions 5–8; spec/p4-04-session-v1.md §4.2, §4.4, §5, §8.7, §10).

A :class:`Link` ties together, for ONE paired peer: the signalling over Tor (the kept-open onion
stream and in-band RV frames, :mod:`._signalling`), the WebRTC generations
(:class:`~p4ref.io.webrtc.Generation`), the pure :class:`~p4ref.session.SessionMachine` and the
SQLite :class:`~p4ref.io.session_store.SessionStore`.  The machine decides; the link moves bytes,
time and durability around it (see :mod:`._link` for the exact order of store and machine calls).

Public asyncio API::

    link = Link.open(home, "laptop", tor=tor_driver, config=LinkConfig(), on_event=callback)
    await link.start()                      # resume from <home>/session.db, publish/dial, connect
    seq = await link.submit(payload)        # bytes ≤ 16371; returns once durable [SES-5]
    d = await link.recv()                   # Delivery(inc, seq, payload), in stream order
    async for d in link.deliveries(): ...   # the same, as an iterator
    await link.confirm(d)                   # consumed: the inbox row goes; until then ``d`` is
                                            # delivered again after a restart, same id [SES-39]
    async for ev in link.events(): ...      # LinkEvent: status connected / reconnecting /
                                            # offline [SES-8], connection_open / _failed / …,
                                            # path (detail: datachannel / tor / none) [SES-73]
    link.status                             # the current status string
    link.path                               # what carries the session now: datachannel, tor
                                            # (the onion stream, small messages, p4-04 §5.1.1)
                                            # or none
    link.stats()                            # LinkStats: path (direct/turn/tor), RTT (the
                                            # session's PING), bytes sent and received, outbox
                                            # size, last reconnect + cause
    link.force_generation()                 # a new generation now (tests, benchmarks)
    link.network_changed(gained)            # the OS saw a network change [SES-48, SES-75]
    link.probe()                            # liveness verdict within 9 s [SES-43]
    await link.stop()                       # everything accepted stays durable

Channels (p4-05), with ``LinkConfig(channels=True)``; then every session message is a channel
item and :meth:`Link.submit` / :meth:`Link.recv` are not used::

    ch = await link.open_channel("files")   # returns once its OPEN is durable
    await ch.send(message)                  # any size: fragmented, waits for credit, done
                                            # once durable; ch.write(data, end_of_message=…)
                                            # streams; ch.offset = bytes durably written.
                                            # send/write/close start at the call and return
                                            # a future: keep many under way without a task
                                            # each; they go out in call order
    ch = await link.accept_channel()        # the peer's channels (after a restart: again)
    m = await ch.recv()                     # ChannelMessage(channel, offset, data), in order;
                                            # None once the peer half-closed
    await m.confirm()                       # consumed: releases credit; until then ``m`` comes
                                            # again after a restart, same id (channel, offset);
                                            # confirms at the call, the future is durability
    await ch.close()                        # half-close;  await ch.reset(code)
    link.channel("files")                   # this side's live channel by name (after a
                                            # restart); local=False: the peer's

Exactly-once (p4-04 §8.7): a payload ``submit`` accepted reaches the peer's inbox exactly once,
in order, across generations, dead paths and crashes of either process; the peer's application
sees it at least once, always with the same id ``(inc, seq)``, until it confirms it: an
application that records the ids it acted on together with its effects (or is idempotent) sees
each message exactly once.

Options (:class:`LinkConfig`): host addresses and STUN/TURN servers per connection, the store's
durability level (``FULL`` default) and quotas, ``dial_only`` (this device never publishes an
onion, SES-15) and ``peer_dial_only`` (never dial the peer; wait for it).
"""

from ._channels import Channel, ChannelError, ChannelMessage
from ._link import RECONNECT_CAUSES, Delivery, Link, LinkConfig, LinkEvent, LinkStats
from ._signalling import Signaller

__all__ = ["RECONNECT_CAUSES", "Channel", "ChannelError", "ChannelMessage", "Delivery", "Link",
           "LinkConfig", "LinkEvent", "LinkStats", "Signaller"]
