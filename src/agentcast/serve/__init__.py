"""The server: Broadcaster, its loop thread, admission, HTTP, auth, TLS, metrics, logs."""
