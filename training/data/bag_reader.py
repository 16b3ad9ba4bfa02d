"""Reading a rosbag2 recording (MCAP or SQLite3) topic by topic, with the bag's own message definitions.

A bag written by ``ros2 bag record`` (MCAP, or SQLite3 from Iron on) carries the definition of every
type it holds; those are used first, so ``carla_msgs`` types the project does not ship
(``CarlaEgoVehicleStatus``) decode. Types without a definition in the bag fall back to ROS 2 Jazzy's
standard messages and the bridge's ``carla_msgs`` files in ``ros2_ws/src/carla_msgs/msg``. Every
failure is a ``DatasetError`` naming the bag, the topic and its type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from simulator.ros_types import default_typestore
from training.data.format import DatasetError


@dataclass(frozen=True)
class BagMessage:
    log_ns: int  # recorder's receive time
    seq: int  # position in the recording (receive order across topics)
    stamp_ns: int  # header stamp (sim time: jumps back when the world reloads); log_ns for a message without header
    msg: Any


def _bag_types(conn) -> dict:
    """The types a connection's embedded definition declares (``{}`` when the bag carries none)."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    fmt, text = conn.msgdef.format, conn.msgdef.data
    if fmt == MessageDefinitionFormat.MSG and text:
        return get_types_from_msg(text, conn.msgtype)
    if fmt == MessageDefinitionFormat.IDL and text:
        sep = "=" * 80 + "\n"
        parts = [p.split("\n", 1)[1] for p in text.split(sep)[1:]] if text.startswith(sep + "IDL: ") else [text]
        return {k: v for part in parts for k, v in get_types_from_idl(part).items()}
    return {}


def bag_typestore(bag: Path, connections) -> Any:
    """A typestore for ``connections``: the bag's own definitions first, the defaults for the rest."""
    from rosbags.typesys import Stores, get_typestore

    types: dict = {}
    for conn in connections:
        try:
            types.update(_bag_types(conn))
        except Exception as exc:  # rosbags' parsers raise their own error types on a bad definition
            raise DatasetError(f"{bag}: topic {conn.topic} ({conn.msgtype}): unreadable message definition ({exc})") from None
    store = get_typestore(Stores.EMPTY)
    store.register({**{k: v for k, v in default_typestore().fielddefs.items() if k not in types}, **types})
    for conn in connections:
        if conn.msgtype not in store.types:
            raise DatasetError(f"{bag}: topic {conn.topic} has type {conn.msgtype}, whose definition the bag does not carry "
                               f"and metasteer does not know (record with a rosbag2 that stores definitions: MCAP, or Iron+)")
    return store


def _open(bag: Path):
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own error types for a missing or broken bag
        raise DatasetError(f"{bag}: not a readable rosbag2 recording ({exc})") from None
    return reader


def topic_types(bag: Path) -> dict[str, str]:
    """Every topic of the bag with its type."""
    reader = _open(bag)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def messages(bag: Path, topics: set[str]) -> Iterator[tuple[str, BagMessage]]:
    """``(topic, message)`` of the wanted ``topics`` in recording order, decoded one at a time (a bag of
    raw camera frames does not fit in memory)."""
    reader = _open(bag)
    try:
        conns = [c for c in reader.connections if c.topic in topics]
        store = bag_typestore(bag, conns)
        for seq, (conn, log_ns, raw) in enumerate(reader.messages(connections=conns)):
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:  # a truncated or mistyped payload: name where it is
                raise DatasetError(f"{bag}: topic {conn.topic} ({conn.msgtype}): cannot decode the message at "
                                   f"{log_ns} ns ({type(exc).__name__}: {exc})") from None
            yield conn.topic, BagMessage(log_ns, seq, stamp_ns(msg) if hasattr(msg, "header") else log_ns, msg)
    finally:
        reader.close()


def stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
