"""Bundled experiment files; shipped inside the package as sweeper.experiments."""
