"""The cascode language server: a thin LSP adapter over the engine (see docs/protocol.md).

Nothing heavy is imported here; `cascode.server.server.create_language_server`
builds a server.
"""
