"""The HTTP edge: everything that imports Flask (application factory, routes, error handlers, request hooks)."""
