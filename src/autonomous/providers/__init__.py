"""State providers: where tasks live. ``get_provider`` picks one from the configuration."""
