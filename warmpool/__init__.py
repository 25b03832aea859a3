"""warmpool: the command-line entry point and the local development cluster tooling."""
