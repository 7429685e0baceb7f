"""`pulumi-resource-dstack-iac`: the engine starts this to serve the package's own resources."""

from __future__ import annotations

import sys


def main() -> None:
    from dstack_iac import __version__
    from dstack_iac.backends.registry import provider_handlers
    from dstack_iac.infra.provider import serve

    serve(provider_handlers, __version__)


if __name__ == "__main__":
    sys.exit(main())
