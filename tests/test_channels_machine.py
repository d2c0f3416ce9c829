"""ChannelMux (p4-05): codec, ids, credit, half-close, reset, restart; the spec's table is the
code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p4ref.channels import (
    INITIAL_WINDOW,
    MAX_DATA,
    ChannelConfig,
    ChannelData,
    ChannelHalfClosed,
    ChannelMux,
    ChannelOpened,
    ChannelReset,
    Close,
    Credit,
    CreditGranted,
    Data,
    ItemType,
    Open,
    Reset,
    decode_item,
    encode_item,
    transition_table_markdown,
    transition_table_mermaid,
)
from p4ref.errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError

SPEC = Path(__file__).resolve().parent.parent / "spec" / "p4-05-channels-v1.md"
W = 16384


def pair(window: int = W, max_channels: int = 256) -> tuple[ChannelMux, ChannelMux]:
    cfg = ChannelConfig(window=window, max_channels=max_channels)
    return ChannelMux(low=True, config=cfg), ChannelMux(low=False, config=cfg)


def deliver(dst: ChannelMux, items: list[bytes]) -> list[object]:
    return [e for i in items for e in dst.receive(i)]


def test_spec_transition_table_and_diagram_match_code() -> None:
    text = SPEC.read_text("utf-8")
    assert transition_table_markdown() in text
    assert "```mermaid\n" + transition_table_mermaid() + "```" in text


def test_spec_item_registry_matches_codec() -> None:
    text = SPEC.read_text("utf-8")
    block = text.split("<!-- registry: channel-items -->", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (0x[0-9A-F]{2}) \| (\w+) \|", block, re.M)
    assert {(int(c, 16), n) for c, n in rows} == {(int(t), t.name) for t in ItemType}


@pytest.mark.parametrize("item", [
    Open(0, "chat"), Open(2**62 - 1, "x" * 64), Data(1, 0, b"a", True),
    Data(3, 2**40, b"\xff" * MAX_DATA, False), Credit(0, 2**64 - 1), Close(5, 0),
    Reset(7, 0xFFFF),
])
def test_codec_round_trip(item: object) -> None:
    raw = encode_item(item)  # type: ignore[arg-type]
    assert decode_item(raw) == item


@pytest.mark.parametrize(("raw", "code"), [
    ("", ErrorCode.MESSAGE_INVALID),
    ("06a0", ErrorCode.MESSAGE_INVALID),
    ("02" + "00" * 17, ErrorCode.MESSAGE_INVALID),  # DATA without data
    ("0202" + "00" * 16 + "61", ErrorCode.MESSAGE_INVALID),  # unknown flag
    ("01a1" + "0100", ErrorCode.MESSAGE_INVALID),  # OPEN without name
    ("01a2010002" + "62c328", ErrorCode.CBOR_INVALID_UTF8),
    ("03a2020001" + "00", ErrorCode.CBOR_UNSORTED_KEYS),
    ("05a20100021a00010000", ErrorCode.MESSAGE_INVALID),  # code > 65535
])
def test_codec_rejects(raw: str, code: ErrorCode) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_item(bytes.fromhex(raw))
    assert exc.value.code == code


def test_ids_by_parity_and_open_exchange() -> None:
    low, high = pair()
    c0, items = low.open("chat")
    c1, items1 = high.open("chat")  # same name at once: no collision [CHN-9]
    assert (c0, c1) == (0, 1)
    assert deliver(high, items) == [ChannelOpened(0, "chat")]
    assert deliver(low, items1) == [ChannelOpened(1, "chat")]
    assert low.open("b")[0] == 2 and high.open("b")[0] == 3


def test_credit_released_only_on_consumption() -> None:
    low, high = pair()
    chan, items = low.open("bulk")
    deliver(high, items)
    items = low.write(chan, b"x" * W, end_of_message=False)
    assert len(items) == -(-W // MAX_DATA)
    evs = deliver(high, items)
    assert sum(len(e.data) for e in evs if isinstance(e, ChannelData)) == W
    assert high.items_to_send() == []  # arrival never grants credit [CHN-28]
    assert low.credit(chan) == 0
    with pytest.raises(LocalProtocolError) as exc:
        low.write(chan, b"y", end_of_message=False)
    assert exc.value.code == ErrorCode.CHAN_CREDIT_EXCEEDED
    assert high.consumed(chan, W // 2 - 1) == []  # below the half-window threshold
    credit = high.consumed(chan, 1)
    assert [decode_item(c) for c in credit] == [Credit(chan, W // 2 + W)]
    assert deliver(low, credit) == [CreditGranted(chan, W // 2 + W - W, W // 2 + W)]


def test_stalled_channel_does_not_block_another() -> None:
    low, high = pair()
    a, ia = low.open("stalled")
    b, ib = low.open("moving")
    deliver(high, ia + ib)
    deliver(high, low.write(a, b"s" * W, end_of_message=True))
    assert low.credit(a) == 0
    for _ in range(5):
        evs = deliver(high, low.write(b, b"m" * W, end_of_message=True))
        got = sum(len(e.data) for e in evs if isinstance(e, ChannelData))
        deliver(low, high.consumed(b, got))
    assert low.credit(a) == 0 and low.credit(b) > 0


def test_peer_exceeding_credit_resets_only_that_channel() -> None:
    low, high = pair()
    a, ia = low.open("a")
    deliver(high, ia)
    bad = encode_item(Data(a, 0, b"z" * 10, False))
    ok = deliver(high, [bad])
    assert ok[0] == ChannelData(a, 0, b"z" * 10, False)
    over = encode_item(Data(a, W - 5, b"z" * 10, False))  # also a gap: flow control first
    evs = high.receive(over)
    assert evs == [ChannelReset(a, ErrorCode.CHAN_FLOW_CONTROL, False)]
    assert [decode_item(i) for i in high.items_to_send()] == [
        Reset(a, ErrorCode.CHAN_FLOW_CONTROL)]
    assert high.channels() == []
    assert high.receive(encode_item(Credit(a, 10**6))) == []  # late item: ignored [CHN-17]


def test_half_close_both_ways_then_forgotten() -> None:
    low, high = pair()
    c, items = low.open("f")
    deliver(high, items)
    deliver(high, low.write(c, b"abc", end_of_message=True))
    assert deliver(high, low.close(c)) == [ChannelHalfClosed(c, 3)]
    assert high.state_string() == "RUNNING 0:HALF_CLOSED_REMOTE"
    deliver(low, high.write(c, b"xy", end_of_message=False))
    deliver(low, high.close(c))
    assert high.state_string() == "RUNNING 0:CLOSED"  # 3 bytes not consumed yet
    high.consumed(c, 3)
    assert high.state_string() == "RUNNING"
    assert low.state_string() == "RUNNING 0:CLOSED"
    low.consumed(c, 2)
    assert low.channels() == []
    with pytest.raises(LocalProtocolError) as exc:
        low.write(c, b"q", end_of_message=True)
    assert exc.value.code == ErrorCode.CHAN_UNKNOWN


def test_restart_redelivers_exactly_the_unconsumed_bytes() -> None:
    low, high = pair()
    c, items = low.open("f")
    deliver(high, items)
    data = low.write(c, b"hello", end_of_message=True)
    deliver(high, data)
    high.consumed(c, 2)
    again = ChannelMux(low=False, config=high.config, state=high.persistent_state())
    assert deliver(again, data) == [ChannelData(c, 2, b"llo", True)]
    assert deliver(again, data) == []  # a second copy in the same lifetime: dropped


def test_broken_item_stream_fails_the_mux() -> None:
    _low, high = pair()
    with pytest.raises(RemoteProtocolError) as exc:
        high.receive(encode_item(Data(7, 0, b"a", False)))  # never opened
    assert exc.value.code == ErrorCode.CHAN_ID_INVALID
    assert high.failed == ErrorCode.CHAN_ID_INVALID
    assert high.receive(encode_item(Open(0, "x"))) == []
    with pytest.raises(LocalProtocolError):
        high.open("x")


def test_initial_credit_when_window_is_larger() -> None:
    low, high = pair(window=4 * W)
    c, items = low.open("big")
    assert [decode_item(i) for i in items] == [Open(c, "big"), Credit(c, 4 * W)]
    deliver(high, items)
    assert [decode_item(i) for i in high.items_to_send()] == [Credit(c, 4 * W)]
    assert low.credit(c) == INITIAL_WINDOW


def test_emitted_items_use_only_defined_types_keys_and_flags() -> None:
    # CHN-43: a v1 sender emits nothing a v1 receiver would reject; every item decodes.
    low, high = pair(window=2 * W)
    out: list[bytes] = []
    c, items = low.open("a")
    out += items
    out += low.write(c, b"m" * (MAX_DATA + 5), end_of_message=True)
    out += low.close(c)
    deliver(high, out)
    out += high.items_to_send() + high.consumed(c, MAX_DATA + 5) + high.resync()
    out += high.reset(c, 7)
    assert {decode_item(i).__class__.__name__ for i in out} == {
        "Open", "Data", "Credit", "Close", "Reset"}


def test_spec_worked_example_hex_is_the_codec_output() -> None:
    # p4-05 §16: every hex line of the worked example is what the reference produces.
    from p4ref.framing import Path as FramePath
    from p4ref.framing import encode_frame
    from p4ref.session import _codec as ses

    text = SPEC.read_text("utf-8").split("## 16. Worked example", 1)[1].split("## 17.", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", text, re.S)
    got = {re.split(r"\s{2,}", line.strip())[0].replace(" ", "")
           for block in blocks for line in block.splitlines() if line.strip()}
    hello = encode_item(Data(0, 0, b"hello", True))
    want = {encode_item(Open(0, "chat")).hex(), hello.hex(), encode_item(Credit(0, 24576)).hex(),
            encode_item(Close(0, 5)).hex(), encode_item(Reset(1, 0x0504)).hex(),
            encode_item(Data(1, 16353, b"\xff" * 3, False)).hex(),
            encode_frame(ses.encode_msg(2, hello), FramePath.DATACHANNEL).hex()}
    assert got == want
    # and the threshold arithmetic the example states (window 16384)
    low, high = pair()
    c, items = low.open("chat")
    deliver(high, items + low.write(c, b"hello", end_of_message=True))
    assert high.consumed(c, 5) == []
    deliver(high, low.write(c, b"x" * (8192 - 5), end_of_message=False))
    assert [decode_item(i) for i in high.consumed(c, 8192 - 5)] == [Credit(c, 24576)]


def test_id_space_ends_at_max_chan_id() -> None:
    # CHN-15, CHN-16 rule 1: ids are at most 2^62 - 1
    from p4ref.channels import MAX_CHAN_ID

    low, high = pair()
    low._next_own = MAX_CHAN_ID + 1  # as if every id had been used
    with pytest.raises(LocalProtocolError) as exc:
        low.open("late")
    assert exc.value.code == ErrorCode.CHAN_TOO_MANY
    high._next_peer = MAX_CHAN_ID + 1
    with pytest.raises(RemoteProtocolError) as rexc:
        high.receive(encode_item(Open(MAX_CHAN_ID + 1, "x")))
    assert rexc.value.code == ErrorCode.CHAN_ID_INVALID


@pytest.mark.parametrize("state", [b"", b"\xa0", bytes.fromhex("a50101021f030004010580"),
                                   bytes.fromhex("a50101" + "02f5" + "0301" + "0401" + "0580")])
def test_restore_refuses_a_foreign_or_corrupt_state(state: bytes) -> None:
    # a HIGH state given to LOW (f5 = LOW), bad counters, bad CBOR: refused, never guessed at
    with pytest.raises(LocalProtocolError) as exc:
        ChannelMux(low=False, config=ChannelConfig(window=W), state=state)
    assert exc.value.code == ErrorCode.MESSAGE_INVALID


def test_config_limits() -> None:
    for bad in ({"window": 0}, {"max_channels": 0}, {"window": 2**64}):
        with pytest.raises(LocalProtocolError):
            ChannelConfig(**bad)


def test_channels_package_does_no_io() -> None:
    # sans-I/O (STYLE.md): no clock, randomness, sockets, files or asyncio in p4ref/channels
    import ast

    banned = {"asyncio", "os", "socket", "time", "random", "secrets", "sqlite3", "pathlib",
              "datetime", "threading"}
    for path in (SPEC.parent.parent / "p4ref" / "channels").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & banned, (path, names)
