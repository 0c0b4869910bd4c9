"""The WebSocket and SSE side: frames, channels, subscriptions and delivery."""
