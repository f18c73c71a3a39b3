# Runs under the MicroPython unix port (benchmarks/firmware_mqtt_bench.py): the heap the
# MQTT client and the uplink modules keep, and what one published reading allocates.
import gc
import sys

port = int(sys.argv[1])
gc.collect()
a = gc.mem_alloc()
import mqtt  # noqa: E402

gc.collect()
b = gc.mem_alloc()
c = mqtt.MQTTClient("bench", "127.0.0.1", port)
gc.collect()
d = gc.mem_alloc()
c.connect()
gc.collect()
e = gc.mem_alloc()
import uplink  # noqa: E402,F401  (pulls in backlog, payload, netboard)

gc.collect()
f = gc.mem_alloc()
msg = '{"device":"bench","boot":"0a1b2c3d","seq":1,"ts":1763700000.123,"uptime_ms":1,"metrics":{"temperature":21.37,"humidity":48.3}}'
for _ in range(10):
    c.publish("iotpipe/bench/telemetry", msg, qos=1)
gc.collect()
gc.disable()
g = gc.mem_alloc()
for _ in range(100):
    c.publish("iotpipe/bench/telemetry", msg, qos=1)
h = gc.mem_alloc()
gc.enable()
c.disconnect()
print("mqtt module %d bytes" % (b - a))
print("client object with its 768-byte buffer %d bytes" % (d - b))
print("connected socket %d bytes" % (e - d))
print("uplink, backlog, payload, netboard modules %d bytes" % (f - e))
print("allocated per QoS 1 publish %d bytes" % ((h - g) // 100))
