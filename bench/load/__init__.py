"""Load generators: separate processes that speak only chatrt's public HTTP/WebSocket protocol."""
