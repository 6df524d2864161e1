"""The worker's app served by uvicorn on a free loopback port in a daemon thread of this process:
how tests and benchmarks drive the real HTTP surface next to the engine they inspect."""

from __future__ import annotations

import threading
import time

import uvicorn

from .app import build_app


class LocalServer:
    def __init__(self, state):
        self.state = state
        self._server = uvicorn.Server(uvicorn.Config(build_app(state), host="127.0.0.1", port=0,
                                                     log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self._server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        """Close the listener, then stop the engine."""
        self._server.should_exit = True
        self._thread.join(10)
        self.state.engine.shutdown()
