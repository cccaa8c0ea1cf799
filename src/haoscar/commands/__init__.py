"""Operations shared by the CLI and the web UI: they take an environment and return structured results."""
