"""Backends: one module per provider, each imported only when a member uses it.

`create_backend(member)` is the factory; each branch imports its heavy library
(llama_cpp, torch/transformers, httpx) inside the branch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import PlanError

if TYPE_CHECKING:  # plans imports .options: no import of plans at run time here
    from ..plans import Member
    from ..types import Backend


def create_backend(member: Member) -> Backend:
    if member.backend == "llama_cpp":
        if getattr(member.settings(), "model_server", False):
            from .llama_server import LlamaServerBackend

            return LlamaServerBackend.from_member(member)
        from .llama_cpp import LlamaCppBackend

        return LlamaCppBackend.from_member(member)
    if member.backend == "llama_server":
        from .remote import RemoteLlamaServerBackend

        return RemoteLlamaServerBackend.from_member(member)
    if member.backend == "transformers":
        from .transformers import TransformersBackend

        return TransformersBackend.from_member(member)
    if member.backend == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend.from_member(member)
    raise PlanError(f"member {member.name}: unknown backend {member.backend!r}")
