"""The command line. Start-up time is part of every command's answer: third-party pydantic
plugins (discovered by scanning every installed distribution) are not loaded in the CLI."""

import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
