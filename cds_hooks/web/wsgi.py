"""WSGI entry point for production servers: `cds_hooks.web.wsgi:app`, settings from the environment.

The production server (`cds-hooks serve --production`, cds_hooks/ops/gunicorn_conf.py) imports this
module once in its master process (preload) and forks its workers from it; each worker then starts
its own CQL engine workers (CqlEngine re-initialises its pool after a fork) and warms them up before
it accepts a request (cds_hooks/engine/warmup.py).
"""

from cds_hooks.web.app import create_app

app = create_app()
