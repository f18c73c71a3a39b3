"""The dashboard's paho client: public API only, acknowledged by the application.

``manual_ack=True`` makes paho leave each QoS 1 PUBACK to us (``Client.ack``): the writer
acknowledges a message only after the transaction holding it committed. MQTT 5's Receive
Maximum (``RECEIVE_MAXIMUM``) is how many unacknowledged messages the broker may have
handed us at once: a window large enough that a commit of a few thousand readings keeps the
stream flowing, small enough that a store that cannot write holds little here.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

RECEIVE_MAXIMUM = 1000
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps our subscriptions and queued readings while we are away."""


def make_client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )


def connect_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props
