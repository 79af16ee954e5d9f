"""Backends: one module per provider, each imported only when a member uses it.

`create_backend(member)` is the factory; each branch imports its heavy library
(llama_cpp, torch/transformers, httpx) inside the branch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import ModelError, PlanError

if TYPE_CHECKING:  # plans imports .options: no import of plans at run time here
    from ..plans import Member
    from ..types import Backend


log = logging.getLogger(__name__)
_warned: set[str] = set()


def in_model_server(member: Member) -> bool:
    """Whether a `llama_cpp` member runs in the machine's model server: `model_server: true`
    always (a missing server binary is then the error), `false` never, unset where
    install.sh built llama-server (else in this process, with one warning)."""
    if member.backend != "llama_cpp":
        return False
    wanted = getattr(member.settings(), "model_server", None)
    if wanted is not None:
        return bool(wanted)
    from ..model_server import server_binary

    try:
        server_binary()
    except ModelError as e:
        if member.name not in _warned:
            _warned.add(member.name)
            log.warning("member %s runs in this process: %s", member.name, e)
        return False
    return True


def create_backend(member: Member) -> Backend:
    if member.backend == "llama_cpp":
        if in_model_server(member):
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
