"""What a send needs beyond a transport: warm sessions, retries, bookkeeping.

The inline backend sends with these; the worker sends through the backend.
"""
