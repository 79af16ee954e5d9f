"""The cascade engine: plans, prompts, backends, sandbox, scoring and the cascade itself.

The engine knows nothing of the language server or the benchmarks; both import it.
Heavy libraries (llama_cpp, torch, transformers, httpx) are imported lazily inside
the backend factories, so importing the engine is cheap.
"""
