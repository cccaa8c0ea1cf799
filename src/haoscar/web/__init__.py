"""The web console: the same commands as the CLI, behind login, over TLS (docs/web.md)."""
