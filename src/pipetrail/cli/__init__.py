"""The command-line interface: thin parsing and rendering over the library."""
