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
import queue
import runpy
import signal
import subprocess
import sys
import threading
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


def _plugin_python(root: str, options: dict) -> str:
    """The Python a plugin (a policy pack) runs with, as Pulumi's own host picks it: the runtime
    option `virtualenv` (relative to the plugin's directory), else its `venv`, else ours."""
    venv = options.get("virtualenv")
    python = Path(root, venv or "venv", "bin", "python")
    if python.exists():
        return str(python)
    if venv:
        raise FileNotFoundError(f"the virtualenv {python.parent.parent} of the plugin in {root} does not exist")
    return sys.executable


def _run_plugin(request, context):
    """LanguageRuntime.RunPlugin, how the engine starts a `runtime: python` policy pack
    (`--policy-pack DIR`): `python DIR ARGS...` (its __main__.py), its stdout and stderr streamed
    back as they come, then its exit code. The engine stops it by cancelling the call."""
    from google.protobuf import json_format
    from pulumi.runtime.proto import language_pb2

    info = request.info
    directory = info.program_directory or request.program
    options = json_format.MessageToDict(info.options) if info.HasField("options") else {}
    python = _plugin_python(info.root_directory or directory, options)
    env = dict(item.split("=", 1) for item in request.env if "=" in item) or dict(os.environ)
    process = subprocess.Popen([python, "-u", directory, *request.args], cwd=request.pwd or None, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()

    context.add_callback(stop)
    chunks: queue.Queue = queue.Queue()

    def pump(stream, field: str) -> None:
        while chunk := os.read(stream.fileno(), 65536):
            chunks.put((field, chunk))
        chunks.put((field, None))

    for stream, field in ((process.stdout, "stdout"), (process.stderr, "stderr")):
        threading.Thread(target=pump, args=(stream, field), daemon=True).start()
    open_streams = 2
    while open_streams:
        field, chunk = chunks.get()
        if chunk is None:
            open_streams -= 1
        else:
            yield language_pb2.RunPluginResponse(**{field: chunk})
    code = process.wait()
    yield language_pb2.RunPluginResponse(exitcode=code if code >= 0 else 128 - code)


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

        def RunPlugin(self, request, context):  # noqa: N802 - the protocol's name
            yield from _run_plugin(request, context)

    # A RunPlugin call holds a worker for as long as its policy pack lives.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(ProjectLanguageServer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    # The engine stops its plugins with SIGINT: end quietly, not with a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, lambda *_: server.stop(0))
    server.wait_for_termination()


if __name__ == "__main__":
    main()
