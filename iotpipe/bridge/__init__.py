"""The serial-to-MQTT bridge daemon."""
