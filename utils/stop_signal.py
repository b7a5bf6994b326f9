"""The one "first signal stops gracefully, the second aborts" mechanism, shared by training
(utils/train), index builds (utils/deploy/indexing.py) and the retrieval service.

    with StopSignal("stopping after this batch") as stop:
        for batch in ...:
            ...
            if stop.requested:
                break                      # stop.signal_name is "SIGINT" or "SIGTERM"

The first SIGINT / SIGTERM sets `requested` (and prints `message`, prefixed with the signal's name, when
one is given); a second raises KeyboardInterrupt (after printing `abort_message`, when given). Handlers
are installed only in the main thread (signal.signal refuses elsewhere) and the previous ones are put
back on exit. Install it after Paddle is imported: Paddle sets its own C++ handlers at import.
"""
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    def __init__(self, message=None, abort_message=None):
        self.message, self.abort_message = message, abort_message
        self.signal_name, self._old = None, {}

    @property
    def requested(self):
        return self.signal_name is not None

    def install(self):
        """Install the handlers (the context manager does this; without it they stay installed)."""
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.restore()

    def _handle(self, signum, frame):
        if self.requested:
            if self.abort_message:
                print(f"\n{self.abort_message}", file=sys.stderr, flush=True)
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if self.message:
            print(f"\n{self.signal_name}: {self.message}", file=sys.stderr, flush=True)
