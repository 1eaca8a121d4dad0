"""gunicorn settings of the production server (`cds-hooks serve --production`).

    gunicorn --config python:cds_hooks.ops.gunicorn_conf cds_hooks.web.wsgi:app

Every value comes from `Config` (`CDS_SERVER_*` variables, the secrets directory or the settings
file; see cds_hooks/config.py). The choices, and why:

- gthread workers: a call spends most of its time waiting on the CQL engine or the EHR's FHIR server,
  so a few threads per process keep both cores busy without a process per concurrent call;
- preload: the application (rule packs, ELM, value sets) is built once in the master and shared by
  the forked workers; each worker then starts and warms its own CQL engine workers before it accepts
  a connection (post_worker_init), so no request pays a cold start;
- graceful shutdown: on SIGTERM workers finish the calls in flight within `server_graceful_timeout`,
  then their engine workers are stopped (worker_exit);
- no control socket: nothing else is listening besides the service port;
- behind a buffering proxy (deploy/nginx/nginx.conf): gunicorn's threads read requests themselves
  with no read timeout, so slow clients are the proxy's to hold (docs/operations.md, "Slow clients");
- header fields up to 32 KB (the proxy's limit too), so an oversized bearer token reaches the service
  and is refused with its JSON 401 rather than gunicorn's HTML 431;
- metrics of every worker added up when `PROMETHEUS_MULTIPROC_DIR` is set (the image sets it): the
  folder is emptied when the server starts and a dead worker's live gauges are dropped (child_exit).
"""

from __future__ import annotations

import os

from cds_hooks.config import Config

_config = Config.from_env()

bind = [_config.server_bind]
workers = _config.server_workers
worker_class = "gthread"
threads = _config.server_threads
timeout = int(_config.server_timeout)
graceful_timeout = int(_config.server_graceful_timeout)
keepalive = int(_config.server_keepalive)
preload_app = True
limit_request_field_size = 32768
control_socket_disable = True
# The heartbeat file on tmpfs: a worker blocked on a slow disk is not a dead worker.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = None
errorlog = "-"
loglevel = "info"
proc_name = "fusion-cds"


def post_worker_init(worker):
    """Start and warm this worker's CQL engine before it serves (a failure stops the worker)."""
    from cds_hooks.engine.warmup import warm_up
    from cds_hooks.pipeline.registry import EXTENSION

    registry = worker.wsgi.extensions.get(EXTENSION)
    if registry is not None:
        warm_up(registry.engine, registry.packs())


def worker_exit(server, worker):
    """Stop this worker's CQL engine workers with it."""
    from cds_hooks.pipeline.registry import EXTENSION

    app = getattr(worker, "wsgi", None)
    registry = getattr(app, "extensions", {}).get(EXTENSION) if app is not None else None
    if registry is not None:
        registry.engine.close()


def on_starting(server):
    """An empty metrics folder for this server's workers (values of an earlier run would be added in)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name in os.listdir(folder):
            if name.endswith(".db"):
                os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
