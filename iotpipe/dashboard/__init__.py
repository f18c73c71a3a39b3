"""The Flask dashboard: ingest from MQTT, history store, live charts and the HTTP API."""
