"""MQTT tests (real mosquitto)."""
