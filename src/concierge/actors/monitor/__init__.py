"""The monitor actor: guest inventory and statistics, served on request and hang-safe."""
