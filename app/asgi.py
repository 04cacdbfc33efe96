"""The ASGI application for uvicorn (``app.asgi:app``); settings come from the environment."""

from app.config import get_settings
from app.main import create_app
from app.observability import configure_logging

# uvicorn's worker processes (``--workers N``) import only this module: set their logging up here too.
configure_logging(get_settings())
app = create_app()
