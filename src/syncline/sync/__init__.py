"""The Convex sync protocol: messages, per-connection sessions, the WebSocket worker."""
