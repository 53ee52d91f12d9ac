"""The request pipeline: admit, attempt, settle, for every dialect alike.

``Gateway`` (``gateway.py``) is the facade the edge calls; admission, the attempt
loop, settlement, streaming, waiting for capacity, cost and token estimates are
its steps. No Starlette and no HTTP header here: the edge renders what these
steps decide.
"""
