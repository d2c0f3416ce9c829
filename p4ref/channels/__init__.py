"""L5 channels: many named channels over one session (spec/p4-05-channels-v1.md).

- :mod:`._codec`: the five channel items (OPEN, DATA, CREDIT, CLOSE, RESET), one per session
  message payload;
- :mod:`._events`: what the multiplexer reports to its driver;
- :mod:`._machine`: :class:`ChannelMux`, the pure sans-I/O multiplexer (ids, credit flow control,
  half-close, reset, crash-safe offsets), with its transition table as data.
"""

from ._codec import (
    DATA_HEADER_LEN,
    INITIAL_WINDOW,
    MAX_CHAN_ID,
    MAX_DATA,
    MAX_ITEM,
    MAX_NAME_LEN,
    Close,
    Credit,
    Data,
    Item,
    ItemType,
    Open,
    Reset,
    decode_item,
    encode_item,
    name_ok,
)
from ._events import (
    ChannelData,
    ChannelEvent,
    ChannelHalfClosed,
    ChannelInfo,
    ChannelOpened,
    ChannelReset,
    ChannelsFailed,
    CreditGranted,
)
from ._machine import (
    DEFAULT_MAX_CHANNELS,
    DEFAULT_WINDOW,
    TRANSITIONS,
    ChannelConfig,
    ChannelMux,
    ChanState,
    Input,
    transition_table_markdown,
    transition_table_mermaid,
)

__all__ = [
    "DATA_HEADER_LEN",
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_WINDOW",
    "INITIAL_WINDOW",
    "MAX_CHAN_ID",
    "MAX_DATA",
    "MAX_ITEM",
    "MAX_NAME_LEN",
    "TRANSITIONS",
    "ChanState",
    "ChannelConfig",
    "ChannelData",
    "ChannelEvent",
    "ChannelHalfClosed",
    "ChannelInfo",
    "ChannelMux",
    "ChannelOpened",
    "ChannelReset",
    "ChannelsFailed",
    "Close",
    "Credit",
    "CreditGranted",
    "Data",
    "Input",
    "Item",
    "ItemType",
    "Open",
    "Reset",
    "decode_item",
    "encode_item",
    "name_ok",
    "transition_table_markdown",
    "transition_table_mermaid",
]
