"""Avochato's documented inbox API as a drop-in, under `/compat/avochato/v1/…`.

A business's inbox integrations, CRMs and scripts written against Avochato keep working with a
pair of our credentials: each route takes its documented parameters (query string, JSON body or
form body) and answers its documented envelope, mapped onto the native model (accounts are
workspaces, tickets are conversations, users are team members).
"""
