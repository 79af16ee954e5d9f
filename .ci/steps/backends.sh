# The extra backends' Python dependencies: httpx and jinja2 for the OpenAI-compatible
# backend, and llama-cpp-python's server dependencies for the test fixture that serves
# a model with `python -m llama_cpp.server` (the llama-cpp-python wheel itself comes
# from install.sh; installing its `server` extra here would rebuild it). torch,
# transformers, accelerate and gguf come from install.sh (the transformers extra).
# Sourced by .ci/run with the venv active and the repo root as cwd; idempotent.

python - <<'PY' 2>/dev/null || python -m pip install -q -e ".[openai]" "jinja2>=3.1" \
  "uvicorn>=0.22.0" "fastapi>=0.100.0" "pydantic-settings>=2.0.1" "sse-starlette>=1.6.1" \
  "starlette-context>=0.3.6,<0.4"
import fastapi, httpx, jinja2, pydantic_settings, sse_starlette, starlette_context, uvicorn
PY
python -c "import transformers, accelerate, gguf" 2>/dev/null \
  || echo "backends: transformers/accelerate/gguf missing: the transformers tests will fail" >&2
