"""One module per command (or command group); `cli/app.py` registers them."""
