"""Running the service's WSGI app: a fixed pool of worker threads, request bodies over a limit refused
before they reach the app, and a graceful stop (the first SIGINT / SIGTERM stops accepting connections and
lets the requests in flight finish, at most `drain_seconds`; a second one aborts).

Why cheroot: the stop must go through a server's public API. waitress (used before) has none for a
graceful stop: its `run()` loop ends only on an exception, `close()` closes the listening socket only,
and draining meant polling its private channel map (`server._map`, `asyncore.loop`, `task_dispatcher`).
werkzeug's `make_server(...).shutdown()` is public but its server is a development server (a thread per
request, no bound, no body limit before the app). cheroot (CherryPy's WSGI server, maintained) has all of
it in public: `Server(numthreads=, max=)` a fixed pool, `max_request_body_size` (413 before the app),
`prepare()` / `serve()` / `stop()`, where `stop()` closes the listening socket and the idle keep-alive
connections and waits up to `shutdown_timeout` for the workers to finish their requests (then cuts
them). Without cheroot installed, Flask/werkzeug's threaded server runs instead (no body limit before
the app, no drain: development only), as waitress's absence did before.

The server runs in a daemon thread (its worker threads are daemons too: a thread inherits that from the
one that makes it, and the pool is made in `prepare()`), the main thread waits for the signal: so a
second signal, raised as KeyboardInterrupt in the main thread, aborts at once, with the service's
requests in flight cut.
"""
import socket
import threading
import time

from utils.errors import UserError
from utils.stop_signal import StopSignal


BACKLOG = 128  # connections the kernel queues before the server accepts them
STOP_GRACE = 1.0  # seconds past the drain for cut requests to end


def check_port(host, port):
    """Fail before loading anything when the address cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc}); choose another --port or --host")


def graceful_stop():
    """SIGTERM / SIGINT: the first one asks the server to stop (no new connections, the requests in flight
    finish), a second one stops at once. Installed after the model is loaded: Paddle sets its own C++
    handlers when it is imported (they print a "FatalError: Termination signal" trace and exit 143)."""
    return StopSignal()


def _cheroot():
    try:
        from cheroot import wsgi
    except ImportError:
        return None
    return wsgi


def serve(app, host, port, threads, max_body, stop=None, drain_seconds=30.0, name="hashing-retrieval"):
    """Serve the WSGI `app` until `stop` (a StopSignal, installed) is requested: cheroot when installed
    (`threads` workers, bodies over `max_body` bytes refused with 413 before they reach the app), else
    Flask/werkzeug's threaded server. On the first signal the listening socket is closed and the requests
    in flight are answered (at most `drain_seconds`); a second signal raises KeyboardInterrupt here.
    → the name of the signal that stopped it."""
    wsgi = _cheroot()
    stop = stop or graceful_stop()
    if wsgi is None:
        return _serve_werkzeug(app, host, port, stop)
    server = wsgi.Server((host, port), app, numthreads=threads, max=threads, server_name=name,
                         request_queue_size=BACKLOG, shutdown_timeout=drain_seconds)
    server.max_request_body_size = max_body
    started, failed = threading.Event(), []

    def run():  # in a daemon thread: the pool prepare() makes is daemon threads too
        try:
            server.prepare()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failed.append(exc)
            return
        finally:
            started.set()
        server.serve()

    runner = threading.Thread(target=run, name="http-server", daemon=True)
    runner.start()
    started.wait()
    if failed:
        if isinstance(failed[0], OSError):
            raise UserError(f"cannot listen on {host}:{port} ({failed[0]}); choose another --port or --host")
        raise failed[0]
    print(f"----- Serving on http://{host}:{port}/ (cheroot, {threads} threads); Ctrl-C or SIGTERM stops", flush=True)
    while not stop.requested:
        if not runner.is_alive():
            raise RuntimeError("the HTTP server stopped by itself")
        time.sleep(0.1)
    # the first signal: stop accepting, drain (Server.stop waits for the workers up to drain_seconds, then
    # cuts their connections, and waits for the app calls to return). In another thread, so that a second
    # signal (KeyboardInterrupt here) aborts at once, and so that an app call that does not return holds
    # the stop up by at most STOP_GRACE seconds (its worker is a daemon thread; the process exits).
    stopper = threading.Thread(target=server.stop, name="http-stop", daemon=True)
    stopper.start()
    stopper.join(drain_seconds + STOP_GRACE)
    if stopper.is_alive():
        print(f"----- requests still running after {drain_seconds:g} s were cut", flush=True)
    return stop.signal_name


def _serve_werkzeug(app, host, port, stop):
    from werkzeug.serving import make_server

    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc}); choose another --port or --host")
    print(f"----- Serving on http://{host}:{port}/ (werkzeug, a thread per request: install cheroot for "
          "production); Ctrl-C or SIGTERM stops", flush=True)
    try:
        server.timeout = 0.5
        while not stop.requested:
            server.handle_request()  # one connection at a time is accepted; threads answer them
        return stop.signal_name
    finally:
        server.server_close()
