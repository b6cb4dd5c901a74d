"""The `meqg` command line (typer); thin commands over meqg_mlx."""
