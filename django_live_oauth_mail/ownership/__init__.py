"""Who may send as whom: the acting user, routing, and address claims.

Rules over the models only, so every layer above (identity's linking, the
transports, the engine, the queue, the Django face) can ask them.
"""
