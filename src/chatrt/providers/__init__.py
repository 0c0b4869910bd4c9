"""AI model providers: the offline demo model and OpenAI-compatible servers."""
