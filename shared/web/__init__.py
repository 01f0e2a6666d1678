"""The HTTP edge that the five functions share: CORS, JSON errors, body limits, bearer auth.

Only the functions import this package; the core (the rest of `shared`) imports no Flask.
"""
