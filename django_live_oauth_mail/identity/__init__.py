"""Sign-in and token state: linking a mailbox, refreshing its tokens, app-only tokens.

The only package that imports msal. Transports ask it for a token for one
mailbox and one resource; views ask it to start and finish a link. Each
provider fills :class:`.providers.SignInProvider`; Microsoft's is :mod:`.microsoft`.
"""
