"""ASGI layers around the whole application: they see every response, 404s and 405s too.

Litestar's own ``middleware=`` runs only for requests that matched a route, so these wrap
``Litestar.asgi_handler`` instead (see :func:`chatrt.app.create_app`).
"""
