"""End-to-end flows composed from tfsr parts. Pipelines own disk layout and printing; tfsr stays pure."""
