"""The HTTP and WebSocket server (Starlette)."""
