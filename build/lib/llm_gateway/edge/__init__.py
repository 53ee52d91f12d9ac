"""The HTTP edge: the ASGI app, its routes and dialects, the server protocol's guards.

Everything that knows about HTTP lives here: reading bodies within their limits,
validating each dialect's request shape, rendering answers, errors and limit
headers in the caller's dialect, the operator routes behind the admin guard. The
layers below never import it.
"""
