"""A mailbox's session per protocol (SMTP XOAUTH2, Graph), each with its replies.

A transport opens a signed-in session for a mailbox (:mod:`.base`); it reads
tokens from :mod:`..identity` and knows nothing of routing rules or queues.
"""
