"""`python -m purify_backdoor` is `purify`."""

import os
import signal

from purify_backdoor.cli import cli
from purify_backdoor.executors.job import JOB_ENV

if os.environ.get(JOB_ENV) == "1":
    # A job started by an executor stops the Ctrl-C way when its driver asks. Ray workers block
    # and ignore SIGINT, and both are inherited across exec: take Python's handler back.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
cli(prog_name="purify")
