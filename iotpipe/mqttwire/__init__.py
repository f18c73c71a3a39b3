"""The MQTT contract beyond its root (``iotpipe.topics``: topic names, the message, the
rejection, status and telemetry): one module per message family, each building and
parsing its payloads, pure (no I/O). Which topic carries which payload:

    <base>/<device>/meta     meta.Meta          (retained)
    <base>/<device>/event    event.Event        (a gap report: event.Gap)
    <base>/<device>/cmd      request.Request
    answers, wherever asked  answer.Answer      (default <base>/<device>/reply)
    <base>/<device>/alert    alert.Alert
    Home Assistant's configs discovery          (retained, under its own prefix)

The exact bytes are in ``tests/vectors/mqtt.json``, checked by the host's tests and by the
firmware (``firmware/payload.py``) under MicroPython.
"""
