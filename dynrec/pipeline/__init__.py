"""Work dir, config, stage registry and runner."""
