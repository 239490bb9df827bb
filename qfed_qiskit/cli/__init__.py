"""Command-line interface (Typer): parses options and delegates to the library."""
