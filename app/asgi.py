"""The ASGI application for uvicorn (``app.asgi:app``); settings come from the environment."""

import gc

from app.config import get_settings
from app.main import create_app
from app.observability import configure_logging

# uvicorn's worker processes (``--workers N``) import only this module: set their logging up here too.
configure_logging(get_settings())
app = create_app()

# Everything imported so far (modules, models, schemas, routes: hundreds of thousands of objects) lives
# as long as the process: out of the collector's sight, a full collection no longer walks them all
# (measured under load: 100 ms pauses, ~35 µs a request on average, gone).
gc.freeze()
