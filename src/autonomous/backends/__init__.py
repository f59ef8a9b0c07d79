"""Model backends: how the runner talks to Claude."""
