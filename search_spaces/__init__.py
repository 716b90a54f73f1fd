"""Search spaces, one YAML per method; shipped inside the package as sweeper.search_spaces."""
