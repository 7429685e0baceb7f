"""A Python language host for the engine dstack-iac builds, so `pulumi preview`/`up` work on
standalone Python projects (stacks/) without Pulumi's `pulumi-language-python` binary (its Go
module is not on the module proxy this project builds from). When the official plugin is on
PATH, Pulumi uses that one instead.

It serves the language-runtime protocol with the Automation API's own in-process server (the
code path every inline program of a run already uses), running the project's `__main__.py`
from the directory the engine names. Started as `pulumi-language-python` by the engine: prints
its port, then serves until the engine stops it.
"""

from __future__ import annotations

import os
import runpy
import sys
from concurrent import futures
from pathlib import Path


def _program_runner(request):
    directory = Path(request.pwd or os.getcwd())
    program = directory / (request.program or ".")
    main = program / "__main__.py" if program.is_dir() else program

    def run() -> None:
        os.chdir(directory)
        if str(main.parent) not in sys.path:
            sys.path.insert(0, str(main.parent))
        runpy.run_path(str(main), run_name="__main__")

    return run


def main() -> None:
    import grpc
    from pulumi.automation._server import LanguageServer
    from pulumi.runtime.proto import language_pb2_grpc

    class ProjectLanguageServer(LanguageServer):
        def __init__(self) -> None:
            super().__init__(lambda: None)

        def Run(self, request, context):  # noqa: N802 - the protocol's name
            self.program = _program_runner(request)
            return super().Run(request, context)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(ProjectLanguageServer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
